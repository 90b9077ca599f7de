"""The nightly recompute's baselines-only engine path computes exactly the full engine's
baselines; the vectorised baseline ids are exactly ``baseline_id``'s."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity, Interactions, WorkItems
from ubi.analytics.baselines import (
    DAY_TYPE_NAMES,
    BaselineParams,
    compute_baselines,
    final_baselines,
)
from ubi.analytics.calendar import day_number, workday_mask
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.ids import baseline_id, baseline_ids, feature_id, feature_ids
from ubi.analytics.results import PreviousState
from ubi.analytics.taxonomy import FEATURES, ROLLUP_COUNTER_COLUMNS
from ubi.analytics.tenant_config import TenantConfig

START = date(2024, 1, 1)
NOW = datetime(2024, 4, 1, 3, tzinfo=UTC)


def synthetic_tenant(n_actors: int = 48, n_days: int = 90, seed: int = 7) -> DailyActivity:
    """Actors in teams of six (plus a team of three, under ``min_team_size``), a weekly
    rhythm, late starters, a week of leave, a lasting level shift and one-day spikes."""
    rng = np.random.default_rng(seed)
    n_c = len(ROLLUP_COUNTER_COLUMNS)
    workday = workday_mask(day_number(START) + np.arange(n_days), TenantConfig.default())
    present = rng.random((n_actors, n_days)) < np.where(workday, 0.9, 0.1)[None, :]
    first = np.where(rng.random(n_actors) < 0.2, rng.integers(10, 60, n_actors), 0)
    present &= np.arange(n_days)[None, :] >= first[:, None]
    present[3, 40:47] = False  # a week of leave
    level = rng.gamma(4.0, 0.3, n_actors)[:, None] * present
    level[5, 50:] *= 4.0  # a level shift that stays
    level[7, 70] *= 12.0  # a spike
    counters = np.zeros((n_actors, n_days, n_c))
    for i in range(3, n_c):
        counters[:, :, i] = rng.poisson(level * (1.0 + (i % 5)))
    total = counters[:, :, 3:].sum(axis=2)
    counters[:, :, COUNTER_INDEX["event_count"]] = total
    counters[:, :, COUNTER_INDEX["after_hours"]] = rng.binomial(total.astype(np.int64), 0.1)
    counters[:, :, COUNTER_INDEX["late_night"]] = rng.binomial(total.astype(np.int64), 0.02)
    hours = np.zeros((n_actors, n_days), dtype=np.int64)
    for h in range(8, 19):
        hours |= (rng.random((n_actors, n_days)) < 0.5 * (total > 0)).astype(np.int64) << h
    focus_n = rng.poisson(2.0 * (total > 0)).astype(float)
    focus_m = focus_n * rng.gamma(5.0, 9.0, (n_actors, n_days))
    s_idx, d_idx = np.nonzero(total > 0)
    inter = Interactions(
        subject=np.repeat(s_idx, 2), day=np.repeat(d_idx, 2),
        counterpart=rng.integers(0, n_actors + 5, s_idx.size * 2),
        count=rng.integers(1, 4, s_idx.size * 2).astype(float),
        cross_team=rng.random(s_idx.size * 2) < 0.3)
    items = WorkItems(subject=s_idx, day=d_idx, item=s_idx * 10 + d_idx // 4,
                      llm_requests=rng.poisson(3.0, s_idx.size).astype(float))
    teams: list[str | None] = [f"team-{i // 6}" if i < n_actors - 3 else "small"
                               for i in range(n_actors)]
    teams[0] = None
    kinds = ["ai_agent" if i % 7 == 0 else "human" for i in range(n_actors)]
    return DailyActivity([f"actor-{i:03d}" for i in range(n_actors)], kinds, teams, START,
                         counters, hours, focus_m, focus_n, inter, items)


@pytest.mark.parametrize("gaps", [False, True])
def test_baselines_only_equals_the_full_analysis(gaps: bool) -> None:
    activity = synthetic_tenant()
    config = TenantConfig.default()
    incomplete = np.zeros(activity.n_days, dtype=bool)
    if gaps:
        incomplete[[30, 31, 75]] = True
    last = day_number(START) + activity.n_days - 1
    full = analyse_tenant(activity, config, tenant_id="t1", incomplete_days=incomplete,
                          evaluate_from_day=last, previous=PreviousState.empty(), now=NOW)
    only = analyse_tenant(activity, config, tenant_id="t1", incomplete_days=incomplete,
                          evaluate_from_day=last, previous=None, now=NOW,
                          baselines_only=True)

    assert only.evaluated_days == full.evaluated_days
    assert only.quiet_days == full.quiet_days
    for key in ("outliers_excluded", "level_shifts"):
        assert only.stats[key] == full.stats[key]
    assert full.stats["level_shifts"] > 0 and full.stats["outliers_excluded"] > 0
    assert not only.features and not only.scores
    assert not only.anomalies.created and not only.signals.changes
    assert [(t.scope, t.window) for t in only.baselines] == [
        (t.scope, t.window) for t in full.baselines]
    assert {t.scope for t in full.baselines} == {"actor", "team", "cohort", "tenant"}
    for a, b in zip(only.baselines, full.baselines, strict=True):
        assert (a.tenant_id, a.subject_ids, a.params, a.computed_at) == (
            b.tenant_id, b.subject_ids, b.params, b.computed_at)
        for name in ("mean", "std", "n_obs", "confidence", "p50", "p90", "p95", "n_outliers",
                     "n_level_shifts"):
            got, want = getattr(a.final, name), getattr(b.final, name)
            assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), name
        assert list(a.iter_rows()) == list(b.iter_rows())


def test_final_baselines_equal_the_running_computation() -> None:
    rng = np.random.default_rng(3)
    n_days, n_series = 120, 300
    values = rng.gamma(3.0, 2.0, (n_series, n_days))
    values[:40, 60:] += 25.0  # level shifts
    values[rng.random(values.shape) < 0.02] *= 15.0  # outliers
    values[rng.random(values.shape) < 0.05] = np.nan
    valid = rng.random((n_series, n_days)) < 0.95
    workday = workday_mask(day_number(START) + np.arange(n_days), TenantConfig.default())
    params = BaselineParams(history_days=90)
    want = compute_baselines(values, valid, workday, params).final
    got = final_baselines(values, valid, workday, params)
    assert want.n_level_shifts.sum() > 0
    for name in vars(want):
        assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), name


AWKWARD = ["actor-001", "a" * 64, 'q"uote', "back\\slash", "ünïcödé", "emoji-\U0001f600",
           "line\nbreak", "tab\tand\u2028sep", "comma,[]", ""]


def test_baseline_ids_equal_baseline_id() -> None:
    rng = np.random.default_rng(11)
    names = [f.name for f in FEATURES] + ['odd"feature', "ß"]
    n = 5000
    subjects = rng.integers(0, len(AWKWARD), n)
    feats = rng.integers(0, len(names), n)
    kinds = rng.integers(0, len(DAY_TYPE_NAMES), n)
    for tenant, scope, window in (("acme", "actor", "7d"), ('t"ü', "team", "28d")):
        got = baseline_ids(tenant, scope, window, AWKWARD, names, DAY_TYPE_NAMES, subjects,
                           feats, kinds)
        assert got.dtype == np.dtype("S36")
        assert [g.decode() for g in got] == [
            baseline_id(tenant, scope, AWKWARD[s], names[f], window, DAY_TYPE_NAMES[k])
            for s, f, k in zip(subjects.tolist(), feats.tolist(), kinds.tolist(), strict=True)]


def test_baseline_ids_of_no_rows() -> None:
    empty = np.zeros(0, dtype=np.int64)
    got = baseline_ids("t", "actor", "7d", ["a"], ["f"], DAY_TYPE_NAMES, empty, empty, empty)
    assert got.shape == (0,)


def test_feature_ids_equal_feature_id() -> None:
    rng = np.random.default_rng(12)
    names = [f.name for f in FEATURES] + ['odd"feature', "ß"]
    n = 5000
    subjects = rng.integers(0, len(AWKWARD), n)
    feats = rng.integers(0, len(names), n)
    days = rng.integers(day_number(START), day_number(START) + 400, n)
    for tenant, scope, window in (("acme", "actor", "24h"), ('t"ü', "cohort", "28d")):
        got = feature_ids(tenant, scope, window, AWKWARD, names, subjects, feats, days)
        assert got.dtype == np.dtype("S36")
        assert [g.decode() for g in got] == [
            feature_id(tenant, scope, AWKWARD[s], names[f], window, d)
            for s, f, d in zip(subjects.tolist(), feats.tolist(), days.tolist(), strict=True)]
    empty = np.zeros(0, dtype=np.int64)
    assert feature_ids("t", "actor", "7d", ["a"], ["f"], empty, empty, empty).shape == (0,)
