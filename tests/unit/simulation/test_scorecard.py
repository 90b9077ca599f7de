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
        "planted": 1, "detected": 1, "precision": 0.5, "recall": 1.0,
        "median_days_to_detect": 2.0, "days_to_detect": [2], "signals": 4,
        "matching_signals": 2}
    assert d["classes"]["context_thrash"] == {
        "planted": 1, "detected": 0, "precision": None, "recall": 0.0,
        "median_days_to_detect": None, "days_to_detect": [], "signals": 0,
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
    assert d["noise_by_class"] == {"burnout_risk": 1, "rework_loop": 1}
    assert d["by_actor_type"] == {"human": {
        "clean_actor_weeks": 3, "signals_on_clean_actor_weeks": 2,
        "signals_per_clean_actor_week": 0.6667,
        "noise_by_class": {"burnout_risk": 1, "rework_loop": 1}}}
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


# Same four weeks; humans a, b, c and agents g, h, all from the first day (warm-up ends Wed 15).
TRUTH_2 = {
    **TRUTH,
    "actors": [{"actor_id": a, "actor_type": kind, "team_id": "x", "utc_offset": "+00:00",
                "first_day": "2025-01-06"}
               for a, kind in (("a", "human"), ("b", "human"), ("c", "human"),
                               ("g", "ai_agent"), ("h", "ai_agent"))],
    "plants": [
        {"actor_id": actor, "signal_class": cls, "start_day": s, "end_day": e,
         "magnitude": {}, "description": ""}
        for actor, cls, s, e in (("a", "burnout_risk", "2025-01-20", "2025-01-26"),
                                 ("b", "burnout_risk", "2025-01-27", "2025-02-02"),
                                 ("c", "burnout_risk", "2025-01-15", "2025-01-21"),
                                 ("g", "guardrail_overrides", "2025-01-15", "2025-01-21"))],
}
SIGNALS_2 = [
    sig("a", "burnout_risk", "2025-01-22", signal_id="1"),  # a detected 2 days in
    sig("a", "burnout_risk", "2025-01-24", signal_id="2"),  # a later episode: not the first
    sig("c", "burnout_risk", "2025-01-20", signal_id="3"),  # c detected 5 days in
    # 10 days after g's plant ended: past recall's 7 days, within precision's 14
    sig("g", "guardrail_overrides", "2025-01-31", signal_id="4"),
    sig("h", "guardrail_overrides", "2025-01-23", "INFO", signal_id="5"),  # h: clean weeks
    sig("h", "after_hours_activity", "2025-01-20", "INFO", signal_id="6"),
    sig("h", "after_hours_activity", "2025-01-29", "INFO", signal_id="7"),
    sig("b", "context_thrash", "2025-01-21", "INFO", signal_id="8"),  # b's clean week
]


def test_precision_window_median_days_to_detect_and_noise_by_actor_type():
    d = score_signals(SIGNALS_2, TRUTH_2).as_dict()
    assert d["classes"]["burnout_risk"] == {
        "planted": 3, "detected": 2, "precision": 1.0, "recall": 0.6667,
        "median_days_to_detect": 3.5, "days_to_detect": [2, 5], "signals": 3,
        "matching_signals": 3}
    assert d["classes"]["guardrail_overrides"] == {
        "planted": 1, "detected": 0, "precision": 0.5, "recall": 0.0,
        "median_days_to_detect": None, "days_to_detect": [], "signals": 2,
        "matching_signals": 1}
    assert [u["actor_id"] for u in d["unmatched"]] == ["h"]
    # Clean weeks (of Jan 20 and Jan 27): b's of Jan 20 (its plant starts on the 27th) and
    # both of h's; a's, c's and g's are within their plants + 7 days.
    assert (d["clean_actor_weeks"], d["signals_on_clean_actor_weeks"]) == (3, 4)
    assert d["signals_per_clean_actor_week"] == 1.3333
    assert d["noise_by_class"] == {"after_hours_activity": 2, "context_thrash": 1,
                                   "guardrail_overrides": 1}
    assert d["by_actor_type"] == {
        "ai_agent": {"clean_actor_weeks": 2, "signals_on_clean_actor_weeks": 3,
                     "signals_per_clean_actor_week": 1.5,
                     "noise_by_class": {"after_hours_activity": 2, "guardrail_overrides": 1}},
        "human": {"clean_actor_weeks": 1, "signals_on_clean_actor_weeks": 1,
                  "signals_per_clean_actor_week": 1.0,
                  "noise_by_class": {"context_thrash": 1}}}


def test_precision_grace_is_its_own_parameter():
    def guardrail(**kw):
        return score_signals(SIGNALS_2, TRUTH_2, **kw).classes["guardrail_overrides"]

    # g's episode is 10 days after its plant's end (Jan 21).
    assert guardrail(precision_grace_days=9).matching_signals == 0
    assert guardrail(precision_grace_days=10).matching_signals == 1
    # recall's grace alone moves detection, not precision
    wide = guardrail(grace_days=10, precision_grace_days=9)
    assert (wide.detected, wide.matching_signals, wide.median_days_to_detect) == (1, 0, 16.0)


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
