"""The detection refinements that keep false alarms rare (docs/analytics.md): sampling-noise
floors, persistence, drops of rates over windows with leave, typed peer groups."""

from __future__ import annotations

import numpy as np
import pytest

from ubi.analytics.aggregates import peer_groups
from ubi.analytics.anomalies import (
    NOISE_MODEL,
    baseline_windows,
    detect,
    is_intensive,
    noise_floor,
)
from ubi.analytics.rule_triggers import persistence_rule
from ubi.analytics.taxonomy import FEATURE_NAMES
from ubi.analytics.tenant_config import TenantConfig

from .helpers import Actor, make_activity
from .test_engine import analyse, office_day, office_worker, signal_classes


def test_every_feature_has_a_noise_model():
    assert set(NOISE_MODEL) == set(FEATURE_NAMES)
    assert not is_intensive("active_days") and not is_intensive("reviews_given")
    assert is_intensive("focus_session_avg_minutes") and is_intensive("after_hours_ratio")


def test_noise_floors():
    m = np.array([0.01, 16.0])
    assert noise_floor("late_night_events", m, None, 1.0).tolist() == [1.0, 4.0]  # Poisson
    assert noise_floor("active_days", m, None, 1.0).tolist() == [1.0, 1.0]
    assert noise_floor("focus_session_avg_minutes", np.array([60.0]), None, 1.0)[0] == 6.0
    # proportions: binomial at the midpoint of baseline and value, over the value's sample
    f = noise_floor("build_failure_rate", np.array([0.1]), np.array([4.0]), 1.0,
                    value=np.array([0.5]))
    assert f[0] == pytest.approx((0.3 * 0.7 / 4) ** 0.5)
    # a baseline rate of 0 is kept 1/2n from 0 (a first failure is not "impossible")
    f0 = noise_floor("test_failure_rate", np.array([0.0]), np.array([20.0]), 1.0)
    assert f0[0] == pytest.approx((0.025 * 0.975 / 20) ** 0.5)
    # rates: Poisson over the denominator, at least one event's worth
    r = noise_floor("context_switch_rate", np.array([0.5, 0.0]), np.array([10.0, 10.0]), 1.0)
    assert r.tolist() == pytest.approx([(0.05) ** 0.5, 0.1])
    # no sample, no floor
    assert noise_floor("after_hours_ratio", np.array([0.2]), np.array([0.0]), 1.0)[0] == 0.0


def test_rates_are_compared_as_two_samples_with_the_baseline():
    """A baseline rate is learnt from a finite sample too (issue 18: builds that happened not
    to fail for three weeks made a later ordinary week's failures look anomalous): the floors
    of rates and shares count the baseline's noise, about baseline_windows(w) windows' worth
    of events; counts and averages are unchanged."""
    assert baseline_windows(1, 0.1) == pytest.approx(26.6)
    assert baseline_windows(7, 0.1) == pytest.approx(32.6 / 7)
    one = noise_floor("test_failure_rate", np.array([0.1]), np.array([50.0]), 1.0,
                      value=np.array([0.2]))
    two = noise_floor("test_failure_rate", np.array([0.1]), np.array([50.0]), 1.0,
                      value=np.array([0.2]), baseline_n=baseline_windows(7, 0.1))
    assert two[0] == pytest.approx(one[0] * (1 + 7 / 32.6) ** 0.5)
    rate = noise_floor("rework_ratio", np.array([0.2]), np.array([20.0]), 1.0, baseline_n=4.0)
    assert rate[0] == pytest.approx((0.2 / 20 * 1.25) ** 0.5)
    assert noise_floor("late_night_events", np.array([16.0]), None, 1.0,
                       baseline_n=4.0)[0] == 4.0


def test_a_floor_keeps_one_event_from_being_an_anomaly():
    value, mean, std = np.array([[1.0, 4.0]]), np.array([[0.01, 0.01]]), np.array([[0.1, 0.1]])
    conf = np.ones((1, 2))
    bare = detect(value, mean, std, conf, warn=2.5, critical=3.5, min_std=1.0)
    assert bare.severity.tolist() == [[2, 2]]  # z = 9.9 and 39.9 against a std of 0.1
    floor = noise_floor("late_night_events", mean, None, 1.0)
    floored = detect(value, mean, std, conf, warn=2.5, critical=3.5, min_std=1.0, floor=floor)
    assert floored.severity.tolist() == [[0, 2]]  # one event is 1 sigma; four are not
    assert floored.z[0, 0] == pytest.approx(0.99)
    assert floored.within_band[0, 0]


def test_persistence_rules():
    assert persistence_rule(1) == (3, 5, True)
    assert persistence_rule(7) == (6, 8, False)  # one unusual day covers 5 workdays of 7d
    assert persistence_rule(28) == (21, 23, False)


def test_peer_groups_compare_people_with_people_and_agents_with_agents():
    actors = [Actor(f"h{i}", {}, team="A") for i in range(6)]
    actors += [Actor("bot", {}, actor_type="ai_agent", team="A")]
    actors += [Actor(f"b{i}", {}, actor_type="ai_agent", team="B") for i in range(5)]
    groups = peer_groups(make_activity(actors, 7), TenantConfig.default())
    label = {a.actor_id: groups.labels[groups.index[i]] for i, a in enumerate(actors)}
    assert {label[f"h{i}"] for i in range(6)} == {"team:A"}
    assert label["bot"] == "cohort:ai_agent"  # one agent among six people: its cohort
    assert label["b0"] == "team:B:ai_agent"


def test_a_single_late_night_is_no_burnout_but_a_late_week_is():
    """The office workers never worked late: their after-hours share has a std of exactly 0.
    Against the SPEC 5.3 stand-in (min_std = 1, one event) a share could never be anomalous;
    rates and shares use their sampling noise instead, so a week of late evenings is seen."""
    team = [office_worker(f"a{i}", i) for i in range(5)]
    day = 7 * 8 + 1  # a Tuesday
    team[0].days[day] = dict(office_day(day), after_hours=1, late_night=1)
    assert signal_classes(analyse(team), "a0") == set()
    for d in range(day, day + 4):  # Tuesday .. Friday, every evening late
        team[0].days[d] = dict(office_day(d), commit_created=12, after_hours=8, late_night=3,
                               hours=[9, 10, 11, 13, 14, 15, 16, 21, 22, 23])
    res = analyse(team)
    assert "burnout_risk" in signal_classes(res, "a0")
    burnout = next(c.signal for c in res.signals.changes if c.signal.subject_id == "a0")
    assert "after_hours_ratio 24h rose to" in burnout.reason
    assert signal_classes(res, "a1") == set()


def test_focus_halved_for_three_weeks_is_an_engagement_drop():
    team = [office_worker(f"a{i}", i) for i in range(5)]
    for d in range(7 * 7, 7 * 10):
        if d in team[0].days:
            team[0].days[d] = dict(team[0].days[d], focus=(50.0, 2))
    res = analyse(team)
    drops = [c.signal for c in res.signals.changes if c.signal.subject_id == "a0"
             and c.signal.signal_class == "engagement_drop"]
    assert drops and "focus_session_avg_minutes" in drops[0].reason
    assert all(signal_classes(res, f"a{i}") == set() for i in range(1, 5))
