"""UT-UBI-01 and friends: focus sessions, features, aggregates (SPEC §5.1, §5.5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ubi.analytics.aggregates import (
    cohort_aggregate,
    eligible_groups,
    group_percentile,
    peer_groups,
    team_aggregate,
    tenant_aggregate,
)
from ubi.analytics.features import compute_features, distinct_in_window
from ubi.analytics.focus import SequenceEvent, focus_by_day
from ubi.analytics.taxonomy import FEATURE_NAMES
from ubi.analytics.tenant_config import TenantConfig

from .helpers import Actor, make_activity

CFG = TenantConfig.default()
DAY0 = 19723  # 2024-01-01, a Monday
T0 = DAY0 * 86400.0


def feat(cube, name, s=0, d=0):
    return float(cube.feature(name)[s, d])


# --- focus sessions ---------------------------------------------------------------------------

def test_focus_pairs_start_with_next_end_and_attributes_to_end_day():
    ev = [SequenceEvent("a", T0 + 9 * 3600, "focus_session_started"),
          SequenceEvent("a", T0 + 10.5 * 3600, "focus_session_ended"),
          SequenceEvent("a", T0 + 23.5 * 3600, "focus_session_started"),
          SequenceEvent("a", T0 + 24.5 * 3600, "focus_session_ended")]  # ends next day
    assert focus_by_day(ev) == {("a", DAY0): (90.0, 1), ("a", DAY0 + 1): (60.0, 1)}


def test_focus_orphan_end_with_duration_counts_and_without_is_ignored():
    ev = [SequenceEvent("a", T0 + 3600, "focus_session_ended", duration_ms=25 * 60000),
          SequenceEvent("a", T0 + 7200, "focus_session_ended")]
    assert focus_by_day(ev) == {("a", DAY0): (25.0, 1)}


def test_focus_fallback_gaps_between_context_switches_capped_at_4h():
    ev = [SequenceEvent("b", T0 + 8 * 3600, "context_switch"),
          SequenceEvent("b", T0 + 8.5 * 3600, "context_switch"),
          SequenceEvent("b", T0 + 14.5 * 3600, "context_switch"),  # 6 h gap -> 4 h
          SequenceEvent("b", T0 + 14.5 * 3600, "context_switch")]  # duplicate: no gap
    assert focus_by_day(ev) == {("b", DAY0): (30.0 + 240.0, 2)}


def test_focus_fallback_only_on_days_without_sessions():
    ev = [SequenceEvent("c", T0 + 3600, "focus_session_started"),
          SequenceEvent("c", T0 + 2 * 3600, "focus_session_ended"),
          SequenceEvent("c", T0 + 3 * 3600, "context_switch"),
          SequenceEvent("c", T0 + 5 * 3600, "context_switch")]
    assert focus_by_day(ev) == {("c", DAY0): (60.0, 1)}


_seq_event = st.builds(
    SequenceEvent, st.sampled_from(["a", "b"]),
    st.integers(0, 3 * 86400).map(lambda s: T0 + s),
    st.sampled_from(["focus_session_started", "focus_session_ended", "context_switch"]),
    st.one_of(st.none(), st.integers(0, 7200000).map(float)))


@settings(max_examples=60, deadline=None)
@given(st.lists(_seq_event, max_size=30), st.randoms(use_true_random=False))
def test_focus_is_independent_of_input_order(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert focus_by_day(shuffled) == focus_by_day(events)


# --- UT-UBI-01: focused vs fragmented days ----------------------------------------------------

def test_ut_ubi_01_focused_vs_fragmented_days_exact_values():
    focused = {"commit_created": 4, "build_succeeded": 3, "build_failed": 1, "test_passed": 6,
               "context_switch": 2, "pr_merged": 1, "pr_reviewed": 2,
               "hours": [9, 10, 11, 13, 14, 15, 16, 17], "focus": (270.0, 3),
               "with": [("bob", 2), ("carol", 1, True)], "llm_request_submitted": 6,
               "llm_request_failed": 1, "items": [("W1", 4), ("W2", 2)]}
    fragmented = {"commit_created": 1, "build_failed": 3, "build_succeeded": 1,
                  "test_failed": 2, "test_passed": 2, "context_switch": 18,
                  "hours": [8, 9, 12, 19, 20, 23], "focus": (60.0, 4), "after_hours": 14,
                  "late_night": 4, "override_attempted": 1, "policy_violation": 1,
                  "llm_request_submitted": 8, "llm_request_failed": 4, "items": [("W3", 8)]}
    act = make_activity([Actor("f", {0: focused}), Actor("g", {0: fragmented})], 1)
    c = compute_features(act, "24h", CFG)
    # focused: 4+3+1+6+2+1+2+6+1 = 26 events
    assert feat(c, "event_count") == 26
    assert feat(c, "commit_count") == 4
    assert feat(c, "build_failure_rate") == 0.25
    assert feat(c, "test_failure_rate") == 0.0
    assert feat(c, "rework_ratio") == 0.25
    assert feat(c, "pr_throughput") == 1
    assert feat(c, "context_switch_rate") == 0.25  # 2 switches / 8 active hours
    assert feat(c, "focus_session_avg_minutes") == 90.0
    assert feat(c, "after_hours_ratio") == 0.0
    assert feat(c, "late_night_events") == 0
    assert feat(c, "reviews_given") == 2
    assert feat(c, "distinct_collaborators") == 2
    assert feat(c, "cross_team_interactions") == 1
    assert feat(c, "llm_requests") == 6
    assert feat(c, "llm_failure_rate") == pytest.approx(1 / 6)
    assert feat(c, "llm_requests_per_work_item") == 3.0
    assert feat(c, "override_count") == 0
    assert np.isnan(feat(c, "active_days"))  # not defined on 24h
    # fragmented: 1+3+1+2+2+18+1+1+8+4 = 41 events
    assert feat(c, "event_count", 1) == 41
    assert feat(c, "build_failure_rate", 1) == 0.75
    assert feat(c, "test_failure_rate", 1) == 0.5
    assert feat(c, "rework_ratio", 1) == 5.0  # (3 + 2) / max(1, 1)
    assert feat(c, "context_switch_rate", 1) == 3.0  # 18 / 6 active hours
    assert feat(c, "focus_session_avg_minutes", 1) == 15.0
    assert feat(c, "after_hours_ratio", 1) == 14 / 41
    assert feat(c, "late_night_events", 1) == 4
    assert feat(c, "distinct_collaborators", 1) == 0
    assert feat(c, "llm_failure_rate", 1) == 0.5
    assert feat(c, "llm_requests_per_work_item", 1) == 8.0
    assert feat(c, "override_count", 1) == 2
    assert c.values.shape == (2, 1, len(FEATURE_NAMES))


def test_rates_are_null_without_denominator_and_rework_uses_max_1():
    act = make_activity([Actor("a", {0: {"file_edited": 3, "build_failed": 2}})], 1)
    c = compute_features(act, "24h", CFG)
    assert np.isnan(feat(c, "test_failure_rate"))
    assert feat(c, "context_switch_rate") == 0.0  # 1 active hour, 0 switches
    assert np.isnan(feat(c, "focus_session_avg_minutes"))
    assert np.isnan(feat(c, "llm_requests_per_work_item"))
    assert feat(c, "rework_ratio") == 2.0
    assert feat(c, "llm_failure_rate") == 0.0
    empty = compute_features(make_activity([Actor("z")], 1), "24h", CFG)
    assert np.isnan(feat(empty, "after_hours_ratio"))
    assert np.isnan(feat(empty, "context_switch_rate"))
    assert feat(empty, "event_count") == 0


def test_windows_sum_days_and_distinct_collaborators_is_not_a_sum_of_daily_distincts():
    days = {0: {"pr_reviewed": 1, "with": [("bob", 1)]},
            1: {"pr_reviewed": 1, "with": [("bob", 1), ("carol", 1)]},
            3: {"pr_reviewed": 2, "with": [("bob", 2)]},
            9: {"pr_reviewed": 1, "with": [("dan", 1)]}}
    act = make_activity([Actor("a", days)], 12)
    c7 = compute_features(act, "7d", CFG)
    assert c7.feature("reviews_given")[0].tolist() == [1, 2, 2, 4, 4, 4, 4, 3, 2, 3, 1, 1]
    assert c7.feature("distinct_collaborators")[0].tolist() == [1, 2, 2, 2, 2, 2, 2, 2, 1, 2,
                                                               1, 1]
    assert c7.feature("active_days")[0].tolist() == [1, 2, 2, 3, 3, 3, 3, 2, 1, 2, 1, 1]
    # confidence: days before the loaded range count as not complete
    assert c7.confidence[0, 0] == pytest.approx(1 / 7)
    assert c7.confidence[0, 6] == 1.0
    inc = np.zeros(12, dtype=bool)
    inc[8] = True
    c7i = compute_features(act, "7d", CFG, inc)
    assert c7i.confidence[0, 8] == pytest.approx(6 / 7)
    assert c7i.confidence[0, 7] == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 15), st.integers(0, 6)),
                max_size=40), st.randoms(use_true_random=False), st.sampled_from([1, 7, 28]))
def test_distinct_in_window_matches_brute_force_and_ignores_order(entries, rnd, w):
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    arr = np.array(shuffled, dtype=np.int64).reshape(-1, 3)
    got = distinct_in_window(arr[:, 0], arr[:, 1], arr[:, 2], 3, 16, w)
    for s in range(3):
        for d in range(16):
            expect = {c for (ss, dd, c) in entries if ss == s and d - w < dd <= d}
            assert got[s, d] == len(expect)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["p", "q", "r"]),
                          st.integers(1, 3), st.booleans()), max_size=20),
       st.randoms(use_true_random=False))
def test_features_invariant_to_the_order_of_interactions(entries, rnd):
    def build(seq):
        days: dict[int, dict] = {}
        for d, who, n, cross in seq:
            days.setdefault(d, {"pr_reviewed": 0, "with": []})
            days[d]["pr_reviewed"] += n
            days[d]["with"].append((who, n, cross))
        return compute_features(make_activity([Actor("a", days)], 10), "7d", CFG).values

    shuffled = list(entries)
    rnd.shuffle(shuffled)
    np.testing.assert_array_equal(build(entries), build(shuffled))


# --- aggregates ---------------------------------------------------------------------------------

def _team_actors(n_a: int, n_b: int):
    actors = [Actor(f"a{i}", {0: {"commit_created": 1, "hours": [i]},
                              1: {"commit_created": 2, "with": [("x", 1)]}}, team="A")
              for i in range(n_a)]
    actors += [Actor(f"b{i}", {0: {"commit_created": 5, "with": [("x", 1), (f"y{i}", 1)]}},
                     team="B") for i in range(n_b)]
    actors.append(Actor("bot", {0: {"llm_request_submitted": 3}}, actor_type="ai_agent"))
    return actors


def test_group_aggregates_sum_counters_or_hours_and_count_distinct_counterparts():
    act = make_activity(_team_actors(5, 2), 2)
    team = team_aggregate(act)
    assert team.group_ids == ["A", "B"]
    c = compute_features(team.activity, "24h", CFG)
    assert c.feature("commit_count")[:, 0].tolist() == [5, 10]
    assert c.feature("commit_count")[:, 1].tolist() == [10, 0]
    assert int(team.activity.active_hours()[0, 0]) == 5  # hours 0..4 OR-ed
    assert c.feature("distinct_collaborators")[:, 0].tolist() == [0, 3]  # x, y0, y1
    assert c.feature("distinct_collaborators")[:, 1].tolist() == [1, 0]  # x once, not 5 times
    assert team.member_group[-1] == -1  # the bot has no team
    cohort = cohort_aggregate(act)
    assert cohort.group_ids == ["human", "ai_agent"]
    cc = compute_features(cohort.activity, "24h", CFG)
    assert cc.feature("llm_requests")[:, 0].tolist() == [0, 3]
    tenant = tenant_aggregate(act, "acme")
    tc = compute_features(tenant.activity, "24h", CFG)
    assert tenant.group_ids == ["acme"]
    assert tc.feature("commit_count")[0].tolist() == [15, 10]


def test_group_after_hours_counts_humans_only():
    # Two people (one evening of four events in 10) and an agent of the team running all night
    people = [Actor(f"p{i}", {0: {"commit_created": 10, "after_hours": 4 * i,
                                  "late_night": i}}, team="A") for i in range(2)]
    agent = Actor("bot", {0: {"llm_request_submitted": 90, "after_hours": 80,
                              "late_night": 60}}, actor_type="ai_agent", team="A")
    act = make_activity([*people, agent], 1)
    for agg in (team_aggregate(act), tenant_aggregate(act, "acme")):
        c = compute_features(agg.activity, "24h", CFG)
        assert c.feature("after_hours_ratio")[0, 0] == pytest.approx(4 / 20), agg.scope
        assert c.feature("late_night_events")[0, 0] == 1, agg.scope
        assert c.feature("event_count")[0, 0] == 110, agg.scope  # activity counts everyone
    cohort = compute_features(cohort_aggregate(act).activity, "24h", CFG)
    ratio = cohort.feature("after_hours_ratio")[:, 0]
    assert ratio[0] == pytest.approx(0.2) and np.isnan(ratio[1])  # no share for agents
    # an actor's own share is its own, agent or not
    assert compute_features(act, "24h", CFG).feature("after_hours_ratio")[2, 0] == \
        pytest.approx(80 / 90)


def test_team_aggregate_exists_only_with_min_team_size_active_members():
    act = make_activity(_team_actors(5, 2), 2)
    team = team_aggregate(act)
    ok = eligible_groups(act, team, "24h", CFG)
    assert ok.tolist() == [[True, True], [False, False]]
    cohort = cohort_aggregate(act)
    assert eligible_groups(act, cohort, "24h", CFG)[:, 0].tolist() == [True, False]
    tenant = tenant_aggregate(act, "acme")
    assert eligible_groups(act, tenant, "24h", CFG).all()
    # 4 active members on day 1 only when one stops: below 5
    actors = _team_actors(5, 0)
    actors[0].days = {0: actors[0].days[0]}
    act2 = make_activity(actors, 2)
    assert eligible_groups(act2, team_aggregate(act2), "24h", CFG)[0].tolist() == [True, False]
    assert eligible_groups(act2, team_aggregate(act2), "7d", CFG)[0].tolist() == [True, True]


def test_peer_group_is_team_when_large_enough_else_cohort():
    act = make_activity(_team_actors(5, 2), 1)
    peers = peer_groups(act, CFG)
    labels = [peers.labels[i] for i in peers.index]
    assert labels[:5] == ["team:A"] * 5
    assert labels[5:7] == ["cohort:human"] * 2
    assert labels[7] == "cohort:ai_agent"


def test_group_percentile_is_nearest_rank():
    values = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [10.0], [np.nan]])
    group = np.array([0, 0, 0, 0, 0, 1, 1])
    p90, n = group_percentile(values, group, 2, 90.0)
    assert p90[:, 0].tolist() == [5.0, 10.0]
    assert n[:, 0].tolist() == [5, 1]
    p10, _ = group_percentile(values, group, 2, 10.0)
    assert p10[0, 0] == 1.0
