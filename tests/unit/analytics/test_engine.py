"""The engine end to end on synthetic tenants: seasonality, weekend streaks, leave, quiet
days, UT-UBI-04 (no property reaches an output), UT-UBI-05 (human / agent parity)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from ubi.analytics import presence
from ubi.analytics.anomalies import ActiveAnomaly
from ubi.analytics.calendar import day_number
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.ids import baseline_id
from ubi.analytics.presence import leave_days, quiet_days
from ubi.analytics.results import PreviousState, TenantAnalysis
from ubi.analytics.signal_lifecycle import Signal
from ubi.analytics.taxonomy import CANONICAL_EVENT_TYPES, FEATURES
from ubi.analytics.tenant_config import TenantConfig

from .helpers import MONDAY, Actor, is_workday, make_activity

CFG = TenantConfig.default()
NOW = datetime(2024, 6, 1, tzinfo=UTC)
WEEKS = 10
N_DAYS = 7 * WEEKS


def office_day(d: int, i: int = 0) -> dict:
    """A regular office day with a small weekly rhythm (never after hours)."""
    wd = d % 7
    return {"commit_created": 4 + (wd % 2), "build_succeeded": 3, "test_passed": 5,
            "build_failed": wd % 2, "context_switch": 4 + (wd % 2), "pr_reviewed": 1,
            "pr_merged": 1 if wd == 2 else 0, "hours": [9, 10, 11, 13, 14, 15, 16],
            "focus": (100.0 + 10 * (wd % 2), 2), "with": [(f"c{(d + i) % 3}", 1)]}


def office_worker(name: str, i: int = 0, team: str | None = "A", n_days: int = N_DAYS,
                  actor_type: str = "human") -> Actor:
    return Actor(name, {d: office_day(d, i) for d in range(n_days) if is_workday(d)},
                 actor_type=actor_type, team=team)


def analyse(actors, n_days=N_DAYS, eval_from=35, cfg=CFG, incomplete=None,
            previous=None) -> TenantAnalysis:
    act = make_activity(actors, n_days)
    return analyse_tenant(act, cfg, tenant_id="acme", incomplete_days=incomplete,
                          evaluate_from_day=day_number(MONDAY) + eval_from,
                          previous=previous or PreviousState.empty(), now=NOW)


def signal_classes(res: TenantAnalysis, subject: str, scope: str = "actor") -> set[str]:
    return {c.signal.signal_class for c in res.signals.changes
            if c.signal.subject_id == subject and c.signal.actor_scope == scope}


def first_signal(res: TenantAnalysis, subject: str, signal_class: str) -> Signal | None:
    """The actor's earliest signal of the class, if any."""
    found = [c.signal for c in res.signals.changes if c.signal.subject_id == subject
             and c.signal.actor_scope == "actor" and c.signal.signal_class == signal_class]
    return min(found, key=lambda s: s.first_day) if found else None


def weekday(day: int) -> int:
    return (day + 3) % 7


def test_regular_weekday_worker_raises_no_anomaly_on_monday_or_saturday():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    res = analyse(team)
    mine = [a for a in res.anomalies.created if a.subject_id == "a0"]
    assert not [a for a in mine if weekday(a.first_day) in (0, 5)]
    assert mine == []  # nothing at all, in fact
    assert signal_classes(res, "a0") == set()


def test_sudden_weekend_work_streak_raises_burnout_risk():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    sat = 7 * (WEEKS - 2) + 5
    # A streak of late work from Friday night through the weekend. (Burnout's 3-of-5 clause
    # needs three days of evidence in the span of the last five workdays, weekend days
    # included; one late Saturday and Sunday alone are two.)
    team[0].days[sat - 1] = dict(office_day(sat - 1), commit_created=10, after_hours=7,
                                 late_night=3, hours=[9, 10, 11, 13, 14, 15, 16, 21, 22, 23])
    for d in (sat, sat + 1):  # a whole weekend of late work
        team[0].days[d] = {"commit_created": 6, "build_failed": 1, "after_hours": 7,
                           "late_night": 3, "hours": [21, 22, 23]}
    res = analyse(team)
    burnout = [c.signal for c in res.signals.changes
               if c.signal.subject_id == "a0" and c.signal.signal_class == "burnout_risk"]
    assert burnout, "a weekend-work streak must raise burnout_risk"
    first = burnout[0]
    # on the Sunday (the third day of the streak) or in the week after
    assert first.first_day - day_number(MONDAY) in range(sat + 1, sat + 7)
    assert "late_night_events 24h rose to 3 events" in first.reason
    assert "on 3 days within the last 5 workdays (2 of them days off)" in first.reason
    assert first.severity in ("WARN", "CRITICAL")
    assert first.evidence_refs["feature_ids"]
    assert signal_classes(res, "a1") == set()


def test_week_off_after_a_burst_raises_no_engagement_drop():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    burst_week = 7 * 6
    for d in range(burst_week, burst_week + 5):
        team[0].days[d] = dict(office_day(d), commit_created=12, context_switch=6)
    for d in range(burst_week + 7, burst_week + 12):  # the following Mon-Fri: on leave
        team[0].days.pop(d, None)
    res = analyse(team)
    leave = leave_days(make_activity(team, N_DAYS), CFG)
    assert leave[0, burst_week + 7: burst_week + 12].all()
    assert not leave[0, burst_week + 5: burst_week + 7].any()  # the weekend before is not
    assert not leave[0, burst_week + 12:].any()
    assert not leave[1].any()
    assert "engagement_drop" not in signal_classes(res, "a0")


def test_two_weeks_off_raise_no_engagement_drop_thanks_to_the_leave_rule(monkeypatch):
    team = [office_worker(f"a{i}", i) for i in range(5)]
    start = 7 * 6
    for d in range(start, start + 12):  # two working weeks away (Mon .. the next Fri)
        team[0].days.pop(d, None)
    assert "engagement_drop" not in signal_classes(analyse(team), "a0")
    # The same history without the leave rule does raise it on the return: the rule matters.
    # (One week away no longer would: the 7-day drop it causes lasts one window, 5 workdays,
    # and persistence asks for 6 of the last 8.)
    monkeypatch.setattr(presence, "LEAVE_MIN_WORKDAYS", 10**6)
    assert "engagement_drop" in signal_classes(analyse(team), "a0")


def test_fewer_active_days_while_present_is_an_engagement_drop():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    start = 7 * 7
    for d in range(start, N_DAYS):  # only Mondays and Thursdays from week 8 on
        if d % 7 not in (0, 3):
            team[0].days.pop(d, None)
    res = analyse(team)
    drops = [c.signal for c in res.signals.changes if c.signal.subject_id == "a0"
             and c.signal.signal_class == "engagement_drop"]
    assert drops
    assert "active_days 7d fell to" in drops[0].reason


def test_quiet_day_and_holiday():
    team = [office_worker(f"a{i}", i) for i in range(6)]
    wednesday = 7 * 6 + 2
    for a in team[:4]:
        a.days.pop(wednesday)
    act = make_activity(team, N_DAYS)
    quiet = quiet_days(act, CFG)
    assert quiet[wednesday] and quiet.sum() == 1
    cfg = TenantConfig.from_document({"holidays": ["2024-02-01"]})
    assert quiet_days(act, cfg)[31]
    res = analyse(team)
    assert day_number(MONDAY) + wednesday in res.quiet_days
    for a in team:
        assert "engagement_drop" not in signal_classes(res, a.actor_id)


def test_incomplete_days_raise_nothing_and_lower_confidence():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    inc = np.zeros(N_DAYS, dtype=bool)
    inc[50:53] = True
    for a in team:
        for d in range(50, 53):
            a.days.pop(d, None)
    res = analyse(team, incomplete=inc)
    bad = {day_number(MONDAY) + d for d in range(50, 53)}
    assert not [a for a in res.anomalies.created if a.first_day in bad]
    assert not [c for c in res.signals.changes if c.signal.signal_class == "engagement_drop"]
    table = next(t for t in res.features if t.scope == "actor" and t.window == "7d")
    e = 52 - 35
    assert table.confidence[0, e] == pytest.approx(4 / 7)


def test_team_and_tenant_scopes_and_small_team_folds_into_tenant():
    actors = [office_worker(f"a{i}", i) for i in range(5)]
    actors += [office_worker(f"b{i}", i, team="B") for i in range(2)]
    res = analyse(actors)
    team_rows = {subject for t in res.features if t.scope == "team"
                 for subject, _, _, _ in t.iter_values()}
    assert team_rows == {"A"}
    tenant = next(t for t in res.features if t.scope == "tenant" and t.window == "24h")
    rows = [(subject, day, value) for subject, day, name, value in tenant.iter_values()
            if name == "commit_count"]
    assert rows and all(subject == "acme" for subject, _, _ in rows)
    monday = next(value for _, day, value in rows if weekday(day) == 0)
    assert monday == 7 * 4  # all seven actors, small team B included


def test_feature_values_and_baseline_ids():
    res = analyse([office_worker(f"a{i}", i) for i in range(5)])
    t = next(t for t in res.features if t.scope == "actor" and t.window == "7d")
    rows = list(t.iter_values())
    assert len(rows) == t.n_rows
    assert {name for _, _, name, _ in rows} == {f.name for f in FEATURES if "7d" in f.windows}
    b = next(iter(next(t for t in res.baselines if t.scope == "actor").iter_rows()))
    assert b.baseline_id == baseline_id("acme", "actor", b.subject_id, b.feature_name,
                                        b.window, b.day_type)
    # the same input gives the same values (determinism; ids derive from the keys)
    res2 = analyse([office_worker(f"a{i}", i) for i in range(5)])
    assert rows == list(next(t for t in res2.features
                             if t.scope == "actor" and t.window == "7d").iter_values())


def test_nightly_run_continues_a_backfill():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    sat = 7 * (WEEKS - 2) + 5
    for d in (sat, sat + 1):
        team[0].days[d] = {"commit_created": 6, "after_hours": 7, "late_night": 3,
                           "hours": [21, 22, 23]}
    full = analyse(team, eval_from=35)
    # Same history, evaluated in two steps: up to the last day, then the last day alone.
    first = analyse(team, n_days=N_DAYS - 1, eval_from=35)
    second = analyse(team, eval_from=N_DAYS - 1, previous=first.next_state())
    assert set(full.signals.active) == set(second.signals.active)
    assert set(full.anomalies.active) == set(second.anomalies.active)


# --- UT-UBI-04 --------------------------------------------------------------------------------

SECRETS = ["alice@example.com", "sk-live-SECRET-TOKEN", "src/secret/payroll.py",
           "JIRA-4711-confidential", "def leaked_code():", "Bearer abc.def.ghi"]


def activity_from_raw(events):
    """What ingestion keeps of an event: type, day, hour, after-hours flag, counterpart and
    work item as opaque codes. Payload properties are never read into the rollups."""
    by_actor: dict[str, Actor] = {}
    for e in events:
        a = by_actor.setdefault(e["actor"], Actor(e["actor"], {}, team="A"))
        day = a.days.setdefault(e["day"], {"hours": []})
        day[e["type"]] = day.get(e["type"], 0) + 1
        day["hours"].append(e["hour"])
        if not 9 <= e["hour"] < 18:
            day["after_hours"] = day.get("after_hours", 0) + 1
        if e.get("counterpart_code") is not None:
            day.setdefault("with", []).append((e["counterpart_code"], 1))
    return list(by_actor.values())


def test_ut_ubi_04_no_property_value_reaches_features_signals_or_evidence():
    rng = np.random.default_rng(4)
    events = []
    for i in range(5):
        for d in range(N_DAYS):
            if not is_workday(d):
                continue
            burst = i == 0 and d >= N_DAYS - 10
            for _ in range(int(rng.integers(3, 7)) + (10 if burst else 0)):
                events.append({
                    "actor": f"p{i}", "day": d,
                    "type": str(rng.choice(["commit_created", "build_failed", "pr_reviewed",
                                            "context_switch", "build_succeeded"])),
                    "hour": int(rng.integers(8, 24 if burst else 17)),
                    "counterpart_code": f"cp{int(rng.integers(0, 4))}",
                    "properties": {"email": SECRETS[0], "token": SECRETS[1],
                                   "file_path": SECRETS[2], "work_item_id": SECRETS[3],
                                   "snippet": SECRETS[4], "auth": SECRETS[5]}})
    res = analyse(activity_from_raw(events))
    outputs = [res.anomalies.created, res.anomalies.updated, res.anomalies.resolved,
               [c.signal for c in res.signals.changes]]
    outputs += [list(t.iter_values()) for t in res.features[:6]]
    outputs += [list(t.iter_rows()) for t in res.scores]
    text = repr(outputs)
    assert res.signals.changes and res.anomalies.created  # there is something to inspect
    for secret in SECRETS:
        assert secret not in text
    allowed_keys = {"feature_ids", "baseline_ids", "event_summary", "values", "peer_group"}
    items: list[ActiveAnomaly | Signal] = [*res.anomalies.created,
                                           *(c.signal for c in res.signals.changes)]
    for item in items:
        ev = item.evidence if isinstance(item, ActiveAnomaly) else item.evidence_refs
        assert set(ev) <= allowed_keys
        summary = ev.get("event_summary", {})
        assert set(summary.get("counts", {})) <= set(CANONICAL_EVENT_TYPES)
        assert all(isinstance(v, int) for v in summary.get("counts", {}).values())
        assert all(isinstance(v, float | None) for v in ev.get("values", {}).values())


# --- UT-UBI-05 --------------------------------------------------------------------------------

def test_ut_ubi_05_human_and_agent_with_identical_events_get_identical_results():
    team = [office_worker(f"a{i}", i, team=None) for i in range(4)]
    human = office_worker("human-1", 0, team=None)
    agent = office_worker("agent-1", 0, team=None, actor_type="ai_agent")
    for twin in (human, agent):  # the same late burst for both (three weeks: it must persist)
        for d in range(N_DAYS - 22, N_DAYS):
            if is_workday(d):
                twin.days[d] = dict(office_day(d), after_hours=5, late_night=2,
                                    build_failed=3)
    res = analyse([*team, human, agent])

    def rows(subject, tables):
        return [dataclasses.replace(r, subject_id="x", score_id="")
                for t in tables if t.scope == "actor" for r in t.iter_rows()
                if r.subject_id == subject]

    def values(subject):
        return [(t.window, day, name, value) for t in res.features if t.scope == "actor"
                for s, day, name, value in t.iter_values() if s == subject]

    assert values("human-1") == values("agent-1") and values("human-1")
    assert rows("human-1", res.scores) == rows("agent-1", res.scores)
    assert rows("human-1", res.scores)  # scores exist

    def sigs(subject):
        return sorted((c.kind, c.signal.signal_class, c.signal.severity, c.signal.score,
                       c.signal.version) for c in res.signals.changes
                      if c.signal.subject_id == subject and c.signal.actor_scope == "actor")

    assert sigs("human-1") == sigs("agent-1")
    assert sigs("human-1")


def test_group_tables_alone_equal_those_of_every_scope() -> None:
    """A group refresh (detection's ``refresh_group_features``) computes only the team, cohort
    and tenant tables: the same values, rows and confidences as with the actor scope."""
    from ubi.analytics.engine import tenant_features

    actors = [office_worker(f"dev-{i}", i, team="A" if i < 6 else "B") for i in range(8)]
    act = make_activity(actors, N_DAYS)
    first = day_number(MONDAY) + 35
    every = {(t.scope, t.window): t for t in tenant_features(
        act, CFG, tenant_id="acme", incomplete_days=None, from_day=first)}
    groups = tenant_features(act, CFG, tenant_id="acme", incomplete_days=None, from_day=first,
                             scopes=("team", "cohort", "tenant"))
    assert {(t.scope, t.window) for t in groups} == {k for k in every if k[0] != "actor"}
    assert any(t.exists.any() for t in groups)
    for t in groups:
        full = every[(t.scope, t.window)]
        assert t.subject_ids == full.subject_ids
        np.testing.assert_array_equal(t.exists, full.exists)
        np.testing.assert_array_equal(t.values, full.values)
        np.testing.assert_array_equal(t.confidence, full.confidence)
