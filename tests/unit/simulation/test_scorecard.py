"""Scorecard arithmetic on hand-made truth and signals (definitions: ``scorecard`` docstring)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ubi.analytics.calendar import day_number
from ubi.simulation.scorecard import episodes, real_history_report, score_signals, warmup_end

# Four weeks, Monday 2025-01-06 .. Sunday 2025-02-02; three actors from the first day.
TRUTH = {
    "tenant_id": "t", "seed": 0, "start_day": "2025-01-06", "end_day": "2025-02-02",
    "actors": [{"actor_id": a, "actor_type": "human", "team_id": "x", "utc_offset": "+00:00",
                "first_day": "2025-01-06"} for a in ("a", "b", "c")],
    "teams": {"x": ["a", "b", "c"]},
    "plants": [
        {"actor_id": "a", "signal_class": "burnout_risk", "start_day": "2025-01-20",
         "end_day": "2025-01-26", "magnitude": {}, "description": ""},
        {"actor_id": "b", "signal_class": "context_thrash", "start_day": "2025-01-13",
         "end_day": "2025-01-19", "magnitude": {}, "description": ""},
    ],
    "noise": [], "holidays": [],
}


def sig(subject, cls, day, severity="WARN", scope="actor", signal_id=None):
    return {"actor_scope": scope, "subject_id": subject, "signal_class": cls,
            "severity": severity, "first_day": day, "signal_id": signal_id}


def test_warm_up_ends_after_min_days_workdays():
    # Mon 6 .. Tue 14 are the first seven workdays: Wednesday 15 is the first trusted day.
    assert warmup_end(date(2025, 1, 6)) == date(2025, 1, 15)
    assert warmup_end(date(2025, 1, 6), holidays=frozenset({date(2025, 1, 7)})) == date(
        2025, 1, 16)


def test_scorecard_arithmetic():
    signals = [
        sig("pa", "burnout_risk", "2025-01-22", signal_id="s1"),  # detects a's plant
        sig("pa", "burnout_risk", "2025-01-22", "CRITICAL", signal_id="s1"),  # same episode
        sig("pa", "burnout_risk", "2025-02-01", signal_id="s2"),  # within end + 7: matches
        sig("pa", "burnout_risk", "2025-01-10", signal_id="s3"),  # warm-up, no plant yet
        sig("b", "rework_loop", "2025-01-28", signal_id="s4"),  # b's clean week of Jan 27
        sig("c", "burnout_risk", "2025-01-27", signal_id="s5"),  # c has nothing planted
        sig("x", "burnout_risk", "2025-01-22", scope="team", signal_id="s6"),
    ]
    card = score_signals(signals, TRUTH, actor_of={"pa": "a"})
    d = card.as_dict()
    assert d["classes"]["burnout_risk"] == {
        "planted": 1, "detected": 1, "precision": 0.5, "recall": 1.0, "signals": 4,
        "matching_signals": 2}
    assert d["classes"]["context_thrash"] == {
        "planted": 1, "detected": 0, "precision": None, "recall": 0.0, "signals": 0,
        "matching_signals": 0}
    assert d["missed"] == [{"actor_id": "b", "signal_class": "context_thrash",
                            "start_day": "2025-01-13", "end_day": "2025-01-19"}]
    # Weeks after warm-up (Wed 15): those of Jan 20 and Jan 27, for 3 actors.
    assert d["actor_weeks"] == 6
    # a: both weeks touched by its plant (Jan 20 .. Jan 26 + 7); b: its plant (Jan 13 .. 26)
    # touches the week of Jan 20; c: both clean.
    assert d["clean_actor_weeks"] == 3
    assert d["signals_on_clean_actor_weeks"] == 2  # b's rework_loop, c's burnout_risk
    assert card.clean_rate == pytest.approx(2 / 3)
    assert d["warmup_signals"] == 1
    assert d["other_classes"] == {"rework_loop": 1}
    assert d["group_signals"] == {"team:burnout_risk": 1}
    assert {u["first_day"] for u in d["unmatched"]} == {"2025-01-10", "2025-01-27"}


def test_a_signal_before_the_plant_or_after_the_grace_does_not_detect_it():
    late = [sig("a", "burnout_risk", "2025-02-03")]  # end 26 + 7 = Feb 2
    early = [sig("a", "burnout_risk", "2025-01-19")]
    for signals in (late, early):
        assert score_signals(signals, TRUTH).classes["burnout_risk"].detected == 0
    assert score_signals(late, TRUTH, grace_days=8).classes["burnout_risk"].detected == 1


def test_signal_forms_engine_objects_dicts_and_created_at():
    # created_at is stamped at the end of the UTC day the rule fired on.
    a = episodes([{"subject_id": "a", "signal_class": "c", "severity": "INFO",
                   "created_at": "2025-01-23T00:00:00+00:00"}])
    b = episodes([{"actor_id": "a", "signal_class": "c", "severity": "INFO",
                   "created_at": datetime(2025, 1, 22, 15, tzinfo=UTC)}])
    c = episodes([{"subject_id": "a", "signal_class": "c",
                   "first_day": day_number(date(2025, 1, 22))}])
    assert a[0].first_day == b[0].first_day == c[0].first_day == date(2025, 1, 22)
    # versions of one signal fold into one episode with the highest severity
    folded = episodes([sig("a", "c", "2025-01-22", "WARN", signal_id="s"),
                       sig("a", "c", "2025-01-24", "CRITICAL", signal_id="s"),
                       sig("a", "c", "2025-01-25", "INFO", signal_id="s")])
    assert len(folded) == 1
    assert (folded[0].severity, folded[0].first_day) == ("CRITICAL", date(2025, 1, 22))


def test_real_history_report():
    def ev(actor, day):
        return {"actor_id": actor, "occurred_at": f"{day}T10:00:00+02:00"}

    events = ([ev("x", f"2024-01-{d:02d}") for d in (2, 3, 4, 5, 5)]  # 4 days: active
              + [ev("x", f"2024-02-{d:02d}") for d in (1, 2, 3)]  # 3 days: not active
              + [ev("y", f"2024-01-{d:02d}") for d in (8, 9, 10, 11, 12)])  # active
    signals = [sig("x", "burnout_risk", "2024-01-05", "WARN", signal_id="1"),
               sig("y", "after_hours_activity", "2024-01-12", "INFO", signal_id="2"),
               sig("y", "engagement_drop", "2024-01-12", "INFO", signal_id="3"),
               sig("y", "engagement_drop", "2024-01-13", "CRITICAL", signal_id="3"),
               sig("t", "burnout_risk", "2024-01-05", "WARN", scope="tenant", signal_id="4")]
    report = real_history_report(signals, events)
    assert report == {
        "events": 13, "actors": 2, "active_actor_months": 2,
        "signals_by_class": {"after_hours_activity": 1, "burnout_risk": 1,
                             "engagement_drop": 1},
        "warn_or_higher": 2, "warn_or_higher_per_active_actor_month": 1.0,
        "warn_or_higher_by_class": {"burnout_risk": 1, "engagement_drop": 1},
        "group_signals_by_class": {"tenant:burnout_risk": 1}}
