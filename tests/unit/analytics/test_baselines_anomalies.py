"""UT-UBI-02 (baselines) and UT-UBI-03 (anomalies), plus their hypothesis properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ubi.analytics.anomalies import (
    AnomalyObservation,
    detect,
    reconcile_anomalies,
    severity_codes,
    zscores,
)
from ubi.analytics.baselines import BaselineParams, compute_baselines
from ubi.analytics.detection import detect_series
from ubi.analytics.tenant_config import TenantConfig

P = BaselineParams()  # the SPEC §10 defaults: alpha 0.1, min_days 7, 3 sigma, min_std 1


def run(series, valid=None, workday=None, params=P):
    x = np.asarray(series, dtype=float)[None, :]
    wd = np.ones(x.shape[1], dtype=bool) if workday is None else np.asarray(workday)
    return compute_baselines(x, valid, wd, params)


# --- UT-UBI-02 ---------------------------------------------------------------------------------

def ut_ubi_02_series() -> list[float]:
    """30 daily values whose *EWM* baseline is exactly mean 50, std 10 after the last one.

    The figure checked is the EWM estimate (the state from day 8 on; SMA only seeds it):
    - days 1-7: 50 + k * (-3..3) with k chosen so the SMA seed is mean 50 and sample variance
      1000/9 (= 100 / (1 - alpha));
    - day 8: exactly 50: the mean stays 50 and the variance becomes 0.9 * 1000/9 = 100;
    - days 9-30: eleven pairs 50 + a, 50 - 0.9 a with a^2 = 100 / 0.9. With alpha = 0.1 the
      first value lifts the mean to 50 + 0.1 a and keeps the variance at 100; the second brings
      the mean back to exactly 50 (its deviation is -a) with the variance again 100.
    So the estimator's value is known in closed form (50 and 10) and only float rounding
    (~1e-13) separates it from the result: the +-0.1 tolerance holds with a wide margin.
    None of the values is beyond 3 sigma (|z| <= 1.6), so no outlier rule interferes.
    """
    k = math.sqrt((1000.0 / 9.0) * 6.0 / 28.0)
    a = math.sqrt(100.0 / 0.9)
    series = [50.0 + k * i for i in (-3, -2, -1, 0, 1, 2, 3)] + [50.0]
    for _ in range(11):
        series += [50.0 + a, 50.0 - 0.9 * a]
    return series


def test_ut_ubi_02_known_mean_50_std_10_within_0_1():
    series = ut_ubi_02_series()
    assert len(series) == 30
    fin = run(series).final
    assert abs(fin.mean[0, 0] - 50.0) <= 0.1
    assert abs(fin.std[0, 0] - 10.0) <= 0.1
    assert fin.n_obs[0, 0] == 30
    assert fin.n_outliers[0, 0] == 0
    assert fin.confidence[0, 0] == pytest.approx(30 / 37)


def test_all_zero_history_gives_mean_0_std_0():
    r = run([0.0] * 20)
    assert r.final.mean[0, 0] == 0.0
    assert r.final.std[0, 0] == 0.0
    assert r.mean[0, 10] == 0.0 and r.std[0, 10] == 0.0


def test_fewer_than_min_days_is_sma_with_low_confidence_and_raises_nothing():
    r = run([10.0, 12.0, 14.0, 10.0, 12.0, 14.0, 500.0])
    # On day 7 (index 6) the baseline is the SMA of six values: low confidence.
    assert r.n_obs[0, 6] == 6
    assert r.mean[0, 6] == pytest.approx(12.0)
    assert r.std[0, 6] == pytest.approx(np.std([10, 12, 14, 10, 12, 14], ddof=1))
    assert r.confidence[0, 6] < 0.5
    assert np.all(r.confidence[0, :7] < 0.5)
    det = detect(np.array([[500.0]]), r.mean[:, 6:7], r.std[:, 6:7], r.confidence[:, 6:7],
                 warn=2.5, critical=3.5, min_std=1.0)
    assert det.severity[0, 0] == 0
    assert np.isnan(r.mean[0, 0])  # no observation yet: no baseline at all


def test_outliers_beyond_3_sigma_are_excluded_including_the_masking_case():
    r = run([50.0] * 20 + [200.0, 300.0])
    assert r.final.mean[0, 0] == 50.0
    assert r.final.std[0, 0] == 0.0  # neither 200 nor 300 entered (no masking)
    assert r.final.n_outliers[0, 0] == 2
    assert r.final.n_obs[0, 0] == 20
    assert r.outlier[0].tolist() == [False] * 20 + [True, True]
    noisy = [45.0, 55.0] * 10
    r2 = run([*noisy, 120.0, 50.0])
    assert r2.outlier[0, 20] and not r2.outlier[0, 21]
    assert r2.final.n_obs[0, 0] == 21
    assert 45 < r2.final.mean[0, 0] < 55


def test_level_shift_is_accepted_after_ten_same_side_outliers_not_within_a_week():
    base = [50.0 + (i % 3) for i in range(30)]
    shifted = [100.0 + (i % 3) for i in range(14)]
    r = run(base + shifted)
    # a week of workdays (5) and even 9 later the baseline still holds the old level
    assert r.mean[0, 30 + 5] < 55 and r.mean[0, 30 + 9] < 55
    assert r.mean[0, 30 + 10] > 95  # after the 10th outlier: re-seeded on the new level
    assert r.final.n_level_shifts[0, 0] == 1
    assert 99 < r.final.mean[0, 0] < 103


def test_invalid_days_are_skipped_never_read_as_zero():
    series = [10.0, 12.0, np.nan, 14.0, 0.0, 10.0, 12.0, 14.0, 0.0, 12.0]
    valid = np.array([True, True, True, True, False, True, True, True, False, True])
    r = run(series, valid=valid)
    clean = run([10.0, 12.0, 14.0, 10.0, 12.0, 14.0, 12.0])
    assert r.final.mean[0, 0] == pytest.approx(clean.final.mean[0, 0])
    assert r.final.std[0, 0] == pytest.approx(clean.final.std[0, 0])
    assert r.final.n_obs[0, 0] == 7


def test_workday_and_weekend_baselines_are_separate():
    days = 28
    workday = np.array([(d % 7) < 5 for d in range(days)])
    series = np.where(workday, 10.0, 0.0)
    r = run(series, workday=workday)
    assert r.final.mean[:, 0].tolist() == [10.0, 0.0]
    assert r.final.n_obs[:, 0].tolist() == [20, 8]
    monday = 21
    assert r.mean[0, monday] == 10.0  # a Monday is compared with workdays, not the weekend


def test_percentiles_over_accepted_observations():
    series = [10.0, 12.0, 14.0, 16.0, 18.0] * 4
    fin = run(series).final
    assert fin.p50[0, 0] == pytest.approx(np.percentile(series, 50))
    assert fin.p90[0, 0] == pytest.approx(np.percentile(series, 90))
    assert fin.p95[0, 0] == pytest.approx(np.percentile(series, 95))
    fin2 = run([50.0] * 20 + [200.0, 300.0]).final
    assert fin2.p95[0, 0] == 50.0  # outliers do not enter the percentiles


_series = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(_series, st.data())
def test_ewm_mean_stays_within_the_data_range(values, data):
    valid = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    r = run(values, valid=np.array(valid))
    used = [v for v, ok in zip(values, valid, strict=True) if ok]
    lo, hi = (min(used), max(used)) if used else (0, 0)
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    means = r.mean[0][~np.isnan(r.mean[0])]
    if used:
        assert np.all(means >= lo - tol) and np.all(means <= hi + tol)
        assert lo - tol <= r.final.mean[0, 0] <= hi + tol
    else:
        assert np.isnan(r.final.mean[0, 0])
    assert np.all(r.std[0][~np.isnan(r.std[0])] >= 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 100.0), min_size=12, max_size=40),
       st.floats(0.01, 1000.0))
def test_zscores_are_invariant_to_scaling_a_feature(values, c):
    x = np.array(values) + np.arange(len(values)) * 1e-3  # never constant: std > 0
    r1 = run(x)
    r2 = run(x * c)
    z1 = zscores(x[None, :], r1.mean, r1.std, 1.0)
    z2 = zscores(x[None, :] * c, r2.mean, r2.std, 1.0)
    ok = (r1.confidence >= 0.5) & np.isfinite(z1)
    np.testing.assert_allclose(z1[ok], z2[ok], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(r1.outlier, r2.outlier)


# --- UT-UBI-03 ---------------------------------------------------------------------------------

def test_ut_ubi_03_thresholds_are_inclusive():
    mean, std = np.full((1, 5), 10.0), np.full((1, 5), 2.0)
    values = np.array([[15.0, 17.2, 17.0, 14.98, 4.0]])  # z = 2.5, 3.6, 3.5, 2.49, -3
    det = detect(values, mean, std, np.ones((1, 5)), warn=2.5, critical=3.5, min_std=1.0)
    assert det.z[0, 0] == 2.5
    assert det.severity[0].tolist() == [1, 2, 2, 0, -1]
    assert severity_codes(np.array([2.5, 3.6, -3.5]), 2.5, 3.5).tolist() == [1, 2, 2]


def test_std_zero_rule():
    z = zscores(np.array([0.0, 3.0, 60.0, 50.0]), np.array([0.0, 0.0, 50.0, 50.0]),
                np.zeros(4), 1.0)
    assert z.tolist() == [0.0, 3.0, 2.0, 0.0]  # std taken as max(1, 0.1*|mean|)
    det = detect(np.array([[3.0]]), np.array([[0.0]]), np.array([[0.0]]), np.array([[1.0]]),
                 warn=2.5, critical=3.5, min_std=1.0)
    assert det.severity[0, 0] == 1  # an all-zero baseline can flag


def test_thresholds_per_dimension_from_config():
    cfg = TenantConfig.from_document(
        {"anomaly_thresholds": {"default": {"warn": 2.5, "critical": 3.5},
                                "flow": {"warn": 2.0, "critical": 3.0}}})
    series = np.array([[10.0, 12.0] * 10 + [13.2], [10.0, 12.0] * 10 + [13.2]])
    r = compute_baselines(series, None, np.ones(21, dtype=bool), BaselineParams())
    det = detect_series(series, r, cfg, np.array(["flow", "activity"]))
    z = det.z[0, 20]
    assert 2.0 <= z < 2.5
    assert det.severity[:, 20].tolist() == [1, 0]


def test_no_anomaly_on_disallowed_days():
    det = detect(np.array([[20.0, 0.0]]), np.full((1, 2), 10.0), np.full((1, 2), 1.0),
                 np.ones((1, 2)), warn=2.5, critical=3.5, min_std=1.0,
                 allow_high=np.array([[False, True]]), allow_low=np.array([[True, False]]))
    assert det.severity.tolist() == [[0, 0]]


NOW = datetime(2024, 2, 1, tzinfo=UTC)
KEY = ("actor", "a1", "context_switch_rate", "7d")


def obs(day, z, sev=None, band=False):
    return AnomalyObservation(key=KEY, day=day, value=10 + 2 * z, mean=10.0, std=2.0, z=z,
                              severity=sev, direction="high" if sev else None,
                              within_band=band, dimension="flow", reason=f"z={z}")


def test_repeats_update_rather_than_duplicate_and_severity_rises():
    ch = reconcile_anomalies({}, [obs(19700, 2.6, "WARN")], NOW, tenant_id="t",
                             resolution_hours=24)
    assert len(ch.created) == 1 and ch.created[0].severity == "WARN"
    first = ch.created[0]
    ch2 = reconcile_anomalies(ch.active, [obs(19701, 3.8, "CRITICAL")], NOW, tenant_id="t",
                              resolution_hours=24)
    assert ch2.created == [] and len(ch2.updated) == 1
    assert ch2.updated[0].anomaly_id == first.anomaly_id
    assert ch2.updated[0].severity == "CRITICAL"
    ch3 = reconcile_anomalies(ch2.active, [obs(19702, 2.7, "WARN")], NOW, tenant_id="t",
                              resolution_hours=24)
    assert ch3.updated[0].severity == "CRITICAL"  # never drops while active
    assert len(ch3.active) == 1


def test_resolution_after_24h_within_one_sigma():
    ch = reconcile_anomalies({}, [obs(19700, 3.0, "WARN")], NOW, tenant_id="t",
                             resolution_hours=24)
    # between 1 sigma and warn: not resolved
    ch2 = reconcile_anomalies(ch.active, [obs(19701, 1.5)], NOW, tenant_id="t",
                              resolution_hours=24)
    assert ch2.resolved == [] and len(ch2.active) == 1
    # in band, but only half a day known yet (now is mid-day): not yet
    mid = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=19702, hours=12)
    ch3 = reconcile_anomalies(ch2.active, [obs(19702, 0.5, band=True)], mid, tenant_id="t",
                              resolution_hours=24)
    assert ch3.resolved == []
    # the whole day within 1 sigma: resolved at its end
    ch4 = reconcile_anomalies(ch2.active, [obs(19702, 0.5, band=True)], NOW, tenant_id="t",
                              resolution_hours=24)
    assert len(ch4.resolved) == 1 and ch4.active == {}
    res = ch4.resolved[0]
    assert res.status == "resolved"
    assert res.resolved_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=19703)
    # 48 h hold needs two in-band days
    ch5 = reconcile_anomalies(ch2.active, [obs(19702, 0.5, band=True)], NOW, tenant_id="t",
                              resolution_hours=48)
    assert ch5.resolved == []
    ch6 = reconcile_anomalies(ch5.active, [obs(19703, 0.2, band=True)], NOW, tenant_id="t",
                              resolution_hours=48)
    assert len(ch6.resolved) == 1


def test_backfill_creates_resolves_and_recreates_in_one_pass():
    seq = [obs(1, 3.0, "WARN"), obs(2, 0.1, band=True), obs(3, 2.6, "WARN")]
    ch = reconcile_anomalies({}, reversed(seq), NOW, tenant_id="t", resolution_hours=24)
    assert [a.status for a in ch.created] == ["resolved", "active"]
    assert ch.created[0].anomaly_id != ch.created[1].anomaly_id
