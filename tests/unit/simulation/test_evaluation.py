"""``ubi evaluate``'s arithmetic over runs, on fabricated scorecards (no generated tenant)."""

from __future__ import annotations

from datetime import date

import pytest

from ubi.simulation.evaluation import Run, derived_end_days, summarise, targets_missed


def cls(planted, detected, signals, matching, days):
    return {"planted": planted, "detected": detected, "signals": signals,
            "matching_signals": matching, "days_to_detect": days,
            "recall": detected / planted if planted else None,
            "precision": matching / signals if signals else None}


def card(rework, burnout, *, clean=(2, 100), unmatched=(), missed=()):
    return {"classes": {"rework_loop": rework, "burnout_risk": burnout,
                        "mentoring_potential": cls(3, 3, 5, 3, [9, 9, 9])},
            "clean_actor_weeks": clean[1], "signals_on_clean_actor_weeks": clean[0],
            "warmup_signals": 0, "unmatched": list(unmatched), "missed": list(missed)}


GOOD = card(cls(3, 3, 3, 3, [1, 2, 3]), cls(3, 3, 3, 3, [1, 1, 2]))
BAD = card(cls(3, 2, 3, 2, [4, 5]), cls(3, 3, 4, 3, [3, 4, 4]), clean=(4, 80),
           unmatched=[{"actor_id": "d", "signal_class": "rework_loop", "severity": "WARN",
                       "first_day": "2025-03-01"},
                      {"actor_id": "e", "signal_class": "burnout_risk", "severity": "WARN",
                       "first_day": "2025-03-02"},
                      {"actor_id": "f", "signal_class": "mentoring_potential",
                       "severity": "INFO", "first_day": "2025-03-02"}],
           missed=[{"actor_id": "a", "signal_class": "rework_loop",
                    "start_day": "2025-02-20", "end_day": "2025-03-05"}])


def test_targets_missed_names_each_failed_target():
    assert targets_missed(GOOD) == []
    assert targets_missed(BAD) == ["rework_loop recall 0.67", "burnout_risk precision 0.75",
                                   "rework_loop precision 0.67", "median days 4.0"]


def test_totals_sum_counts_over_runs_and_take_the_median_over_every_risk_plant():
    t = summarise([Run(7, date(2025, 3, 30), GOOD), Run(7, date(2025, 3, 29), BAD)])
    assert t["runs"] == 2 and t["runs_meeting_every_target"] == 1
    assert (t["planted"], t["missed"]) == (18, 1)
    # mentoring_potential is not a risk class: neither its unmatched signal nor its days count
    assert t["unmatched_risk_signals"] == 2
    assert (t["signals_on_clean_actor_weeks"], t["clean_actor_weeks"]) == (6, 180)
    assert t["signals_per_clean_actor_week"] == pytest.approx(6 / 180, abs=1e-4)
    assert t["classes"]["rework_loop"]["recall"] == pytest.approx(5 / 6, abs=1e-4)
    assert t["classes"]["burnout_risk"]["precision"] == pytest.approx(6 / 7, abs=1e-4)
    # risk days: 1 2 3 1 1 2 4 5 3 4 4 -> median 3
    assert t["median_days_to_detect"] == 3.0


def test_derived_end_days_are_distinct_and_depend_on_the_seed():
    last = date(2025, 3, 30)
    days = derived_end_days(101, 3, last=last)
    assert len(set(days)) == 3 and all(date(2025, 3, 24) <= d <= last for d in days)
    assert derived_end_days(101, 3, last=last) == days
    assert derived_end_days(103, 3, last=last) != days
    assert len(set(derived_end_days(5, 7, last=last))) == 7
