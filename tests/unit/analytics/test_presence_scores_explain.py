"""Leave and quiet days, scores, explanations, evidence and ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ubi.analytics.explain import (
    EVIDENCE_EMBED_LIMIT,
    build_evidence,
    describe_context,
    describe_deviation,
    describe_score,
    event_summary,
    fmt_value,
    package_evidence,
)
from ubi.analytics.focus import SequenceEvent, focus_by_day
from ubi.analytics.ids import baseline_id, feature_id, signal_id
from ubi.analytics.presence import first_active_day, leave_days, quiet_days
from ubi.analytics.scores import compute_scores, previous_values, score_features
from ubi.analytics.taxonomy import DIMENSIONS, FEATURE_INDEX, FEATURE_NAMES, ROLLUP_COUNTER_COLUMNS
from ubi.analytics.tenant_config import TenantConfig

from .helpers import Actor, is_workday, make_activity

CFG = TenantConfig.default()
F = len(FEATURE_NAMES)


def test_two_weeks_leave_includes_the_weekend_inside_but_not_short_absences():
    days = {d: {"commit_created": 1} for d in range(35) if is_workday(d)}
    for d in range(7, 21):  # two full weeks off (Mon 7 .. Sun 20)
        days.pop(d, None)
    for d in (24, 25, 26, 27):  # four workdays off: not leave
        days.pop(d, None)
    days[13] = {"commit_created": 1}  # a Sunday commit inside the leave
    act = make_activity([Actor("a", days)], 35)
    leave = leave_days(act, CFG)[0]
    assert leave[7:12].all() and leave[14:19].all()  # Mon-Fri of both weeks
    assert leave[12]  # the idle Saturday inside the run
    assert not leave[13]  # the Sunday with a commit is not leave
    assert not leave[24:28].any()
    assert not leave[19] and not leave[20]  # the weekend after the run's last workday
    assert first_active_day(act).tolist() == [0]


def test_quiet_day_needs_enough_usually_active_actors():
    actors = [Actor(f"a{i}", {d: {"commit_created": 1} for d in range(28) if is_workday(d)})
              for i in range(2)]
    for a in actors:
        a.days.pop(23)
    act = make_activity(actors, 28)
    assert not quiet_days(act, CFG).any()  # two actors are too few to call a day quiet


def test_score_orientation_clamp_and_previous():
    z = np.full((1, F, 3), np.nan)
    usable = np.zeros((1, F, 3), dtype=bool)
    conf = np.ones((1, F, 3))
    i_csr = FEATURE_INDEX["context_switch_rate"]
    i_focus = FEATURE_INDEX["focus_session_avg_minutes"]
    z[0, i_csr] = [0.0, 2.0, 9.0]  # more switching is unhealthy
    z[0, i_focus] = [0.0, 1.0, -9.0]  # longer focus is healthy
    usable[0, [i_csr, i_focus]] = True
    i_events = FEATURE_INDEX["event_count"]
    z[0, i_events] = 50.0  # volume-only: never in a score
    usable[0, i_events] = True
    block = compute_scores(z, usable, conf, np.ones((1, 3)), "7d",
                           previous=np.array([[np.nan, 75.0, np.nan, np.nan]]))
    flow = DIMENSIONS.index("flow")
    assert block.score[0, flow].tolist() == [50.0, 45.0, 0.0]  # 50 + 10 * mean(-2, 1) = 45
    assert block.n_features[0, flow].tolist() == [2, 2, 2]
    assert block.previous[0, flow].tolist() == [75.0, 50.0, 45.0]
    activity = DIMENSIONS.index("activity")
    assert np.isnan(block.score[0, activity]).all()  # no usable non-volume feature
    assert block.confidence[0, flow, 0] == pytest.approx(2 / len(score_features("7d")["flow"]))
    assert "active_days" not in [FEATURE_NAMES[i] for i in score_features("24h")["activity"]]


def test_previous_values_forward_fill():
    s = np.array([[[np.nan, 60.0, np.nan, 40.0]]])
    prev = previous_values(s, np.array([[70.0]]))
    assert prev[0, 0].tolist() == [70.0, 70.0, 60.0, 60.0]


def test_reason_strings_read_like_the_spec():
    text = describe_deviation("context_switch_rate", "7d", 6.2, 2.1, 0.8, 5.1, hits=4, of=5)
    assert text == ("context_switch_rate 7d rose to 6.2/h (baseline 2.1 ± 0.8, z=5.1) "
                    "on 4 of the last 5 workdays")
    assert describe_deviation("late_night_events", "24h", 3.0, 0.0, 1.0, 3.0, hits=3, of=5,
                              days_off=2).endswith(
        "on 3 days within the last 5 workdays (2 of them days off)")
    assert describe_context("pr_throughput", "7d", 3.0, 3.2, 0.5) == "pr_throughput 7d flat"
    assert describe_score("flow", 75.0, 50.0, [("context_switch_rate", "7d", -2.5)]) == (
        "flow score 75 → 50 (context_switch_rate 7d z=-2.5)")
    assert describe_deviation("focus_session_avg_minutes", "24h", 12.0, 60.0, 10.0,
                              -4.8).startswith("focus_session_avg_minutes 24h fell to 12 min")


def test_units_are_singular_for_exactly_one():
    assert describe_context("pr_throughput", "7d", 1.0, 3.2, 0.5) == (
        "pr_throughput 7d below baseline (1 PR merged vs 3.2)")
    assert describe_context("distinct_collaborators", "7d", 1.0, 4.2, 0.5) == (
        "distinct_collaborators 7d below baseline (1 person vs 4.2)")
    assert [fmt_value("distinct_collaborators", v) for v in (0.0, 1.0, 4.0)] == [
        "0 people", "1 person", "4 people"]
    assert [fmt_value(f, 1.0) for f in ("late_night_events", "reviews_given", "active_days",
                                        "llm_requests_per_work_item", "focus_session_avg_minutes",
                                        "context_switch_rate")] == [
        "1 event", "1 review", "1 day", "1 request/item", "1 min", "1/h"]
    assert fmt_value("pr_throughput", 1.04) == "1 PR merged"  # printed as 1, so read as one
    assert fmt_value("pr_throughput", 1.5) == "1.5 PRs merged"
    assert describe_deviation("override_count", "24h", 3.0, 0.0, 1.0, 3.0, hits=1, of=5,
                              days_off=1).endswith(
        "on 1 day within the last 5 workdays (1 of them a day off)")


def test_evidence_has_counts_and_ids_only_and_reports_its_size():
    counters = np.zeros((2, len(ROLLUP_COUNTER_COLUMNS)))
    counters[0, ROLLUP_COUNTER_COLUMNS.index("n_commit_created")] = 3
    counters[1, ROLLUP_COUNTER_COLUMNS.index("n_build_failed")] = 2
    summary = event_summary(counters, 19723, 19724)
    assert summary == {"counts": {"build_failed": 2, "commit_created": 3},
                       "from": "2024-01-01", "to": "2024-01-02"}
    fid = feature_id("t", "actor", "a", "rework_ratio", "7d", 19724)
    ev = build_evidence([fid, fid], [baseline_id("t", "actor", "a", "rework_ratio", "7d",
                                                 "workday")], summary, {"rework_ratio.7d": 0.5})
    assert ev["feature_ids"] == [fid]
    pkg = package_evidence(ev)
    assert pkg.size_bytes == len(json.dumps(ev, sort_keys=True, separators=(",", ":")))
    assert pkg.embed
    big = build_evidence([f"{i:036d}" for i in range(40)], [], summary)
    assert not package_evidence(big).embed and package_evidence(big).size_bytes >= \
        EVIDENCE_EMBED_LIMIT


def test_ids_are_deterministic_and_distinct():
    a = feature_id("t1", "actor", "a", "event_count", "7d", 19723)
    assert a == feature_id("t1", "actor", "a", "event_count", "7d", 19723)
    assert a != feature_id("t2", "actor", "a", "event_count", "7d", 19723)
    assert a != feature_id("t1", "actor", "a", "event_count", "7d", 19724)
    assert baseline_id("t", "team", "x", "f", "7d", "workday") != baseline_id(
        "t", "team", "x", "f", "7d", "weekend")
    assert signal_id("t", "actor", "a|b", "c", 1) != signal_id("t", "actor", "a", "b|c", 1)


def test_second_start_replaces_an_open_focus_session():
    t0 = 19723 * 86400.0
    ev = [SequenceEvent("a", t0 + 3600, "focus_session_started"),
          SequenceEvent("a", t0 + 2 * 3600, "focus_session_started"),
          SequenceEvent("a", t0 + 2.5 * 3600, "focus_session_ended")]
    assert focus_by_day(ev) == {("a", 19723): (30.0, 1)}


def test_chance_weekend_workers_do_not_make_weekends_quiet():
    actors = [Actor(f"a{i}", {d: {"commit_created": 1} for d in range(28) if is_workday(d)})
              for i in range(20)]
    actors += [Actor(f"w{i}", {5: {"commit_created": 1}, 12: {"commit_created": 1}})
               for i in range(3)]  # two Saturdays, then never again
    quiet = quiet_days(make_activity(actors, 28), CFG)
    assert not quiet.any()
    # ...while a workday on which most of the office is absent is quiet
    for a in actors[:15]:
        a.days.pop(23)
    assert np.flatnonzero(quiet_days(make_activity(actors, 28), CFG)).tolist() == [23]
