"""Detection over one scope and window, and what it hands on (SPEC §5.3).

``detect_range`` runs ``anomalies.detect`` on a feature cube against its running baselines
over the days the rules read, with each value's sampling-noise floor, and returns the figures
z was computed with. ``hit_records`` keeps the numbers of every anomalous value (the rules'
``HitTable``); ``anomaly_observations`` turns them into the observations of the anomaly
lifecycle, with ids, reasons and evidence. ``detect_series`` is detection over whole
histories of plain series (benchmarks and backfill checks).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ubi.analytics.anomalies import (
    NOISE_MODEL,
    SEVERITY_NAME,
    ActiveAnomaly,
    AnomalyKey,
    AnomalyObservation,
    Detection,
    baseline_windows,
    detect,
    is_intensive,
    noise_floor,
)
from ubi.analytics.baselines import BaselineParams, RunningBaselines, effective_std
from ubi.analytics.explain import build_evidence, describe_deviation, event_summary
from ubi.analytics.features import FeatureCube
from ubi.analytics.ids import baseline_id, feature_id
from ubi.analytics.rule_inputs import HitInfo, HitTable
from ubi.analytics.scopes import Scope
from ubi.analytics.taxonomy import FEATURE_INDEX, FEATURES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

#: Features that are rates, shares or averages (not sums over the window's days).
_INTENSIVE = np.array([is_intensive(f.name) for f in FEATURES])


def detect_range(cube: FeatureCube, running: RunningBaselines, r0: int, warn_crit: np.ndarray,
                 min_std: float, allow_high: np.ndarray, allow_low: np.ndarray,
                 allow_low_intensive: np.ndarray | None = None, alpha: float | None = None
                 ) -> tuple[Detection, tuple[np.ndarray, ...]]:
    """Detection over days r0.. as [S, F, L] arrays; also returns (values, mean, std, conf).

    ``allow_low_intensive``: the drop mask of rates, shares and averages (``scopes.window_masks``).
    The std returned is the one z was computed with: the baseline's, raised to the value's
    sampling-noise floor (``anomalies.noise_floor``), so reasons quote the figures behind z.
    """
    n_s, n_d, n_f = cube.values.shape
    n_l = n_d - r0

    def sfl(a: np.ndarray) -> np.ndarray:  # [S*F, D] -> [S, F, L]
        return np.asarray(a[:, r0:]).reshape(n_s, n_f, n_l)

    vals = np.ascontiguousarray(cube.values[:, r0:, :].transpose(0, 2, 1))
    mean, std, conf = sfl(running.mean), sfl(running.std), sfl(running.confidence)
    floor = np.empty((n_s, n_f, n_l))
    base_n = None if alpha is None else baseline_windows(WINDOWS[cube.window], alpha)
    for f, spec in enumerate(FEATURES):
        denom_name = NOISE_MODEL[spec.name][1]
        denom = cube.denominators.get(denom_name) if denom_name else None
        floor[:, f, :] = noise_floor(spec.name, mean[:, f, :],
                                     None if denom is None else denom[:, r0:], min_std,
                                     vals[:, f, :], base_n)
    low = allow_low[:, None, r0:]
    if allow_low_intensive is not None:
        low = np.where(_INTENSIVE[None, :, None], allow_low_intensive[:, None, r0:], low)
    # A rate or share whose history never varied (std 0) is judged by its sampling noise:
    # the SPEC 5.3 stand-in max(min_std, 0.1 |mean|) is one event, not a share's unit (a share
    # that was always 0 could never be anomalous against a stand-in std of 1).
    zero_std = np.where(_INTENSIVE[None, :, None], floor, 0.0)
    det = detect(vals, mean, std, conf, warn=warn_crit[None, :, 0, None],
                 critical=warn_crit[None, :, 1, None], min_std=min_std,
                 allow_high=allow_high[:, None, r0:], allow_low=low, floor=floor,
                 zero_std=zero_std)
    with np.errstate(invalid="ignore"):
        eff = effective_std(mean, std, min_std)
        eff = np.where((std == 0) & (zero_std > 0), zero_std, eff)
        eff = np.maximum(eff, floor)
    eff = np.where(np.isnan(std), np.nan, eff)
    return det, (vals, mean, eff, conf)


def detect_series(values: np.ndarray, running: RunningBaselines, config: TenantConfig,
                  dimensions: np.ndarray, allow_high: np.ndarray | None = None,
                  allow_low: np.ndarray | None = None) -> Detection:
    """Detection over whole histories of N series ([N, D]); ``dimensions`` [N] names each
    series' dimension for its thresholds. The entry point of benchmarks and backfill checks."""
    warn = np.empty(len(dimensions))
    crit = np.empty(len(dimensions))
    for dim in set(dimensions.tolist()):
        m = dimensions == dim
        warn[m], crit[m] = config.thresholds(dim)
    return detect(values, running.mean, running.std, running.confidence, warn=warn[:, None],
                  critical=crit[:, None], min_std=BaselineParams.from_config(config).min_std,
                  allow_high=allow_high, allow_low=allow_low)


def hit_records(det: Detection, vals: np.ndarray, mean: np.ndarray, std: np.ndarray,
                bconf: np.ndarray, wconf: np.ndarray) -> HitTable:
    """The numbers of every anomalous value (nonzero severity), sparse: the rules' hits."""
    ss, ff, ll = np.nonzero(det.severity)
    return HitTable(det.severity.shape, ss, ff, ll, vals[ss, ff, ll], mean[ss, ff, ll],
                    std[ss, ff, ll], det.z[ss, ff, ll], bconf[ss, ff, ll] * wconf[ss, ll])


def anomaly_observations(tenant_id: str, sc: Scope, window: str, cube: FeatureCube,
                         det: Detection, hits: Mapping[tuple[int, int, int], HitInfo],
                         vals: np.ndarray, mean: np.ndarray, std: np.ndarray,
                         bconf: np.ndarray, r0: int, e0: int, day_nums: np.ndarray,
                         workday: np.ndarray, incomplete: np.ndarray,
                         active: Mapping[AnomalyKey, ActiveAnomaly]
                         ) -> list[AnomalyObservation]:
    """Observations for the lifecycle: every anomalous value on an evaluated day, and for keys
    that are or become active, every evaluable value from then on (for resolution)."""
    e_off = e0 - r0
    n_l = vals.shape[2]
    w = WINDOWS[window]
    subjects = cube.subject_ids
    index = {s: i for i, s in enumerate(subjects)}
    first_hit: dict[tuple[int, int], int] = {}
    for (s, f, lday) in hits:
        if lday >= e_off:
            prev = first_hit.get((s, f))
            first_hit[(s, f)] = lday if prev is None else min(prev, lday)
    for (scope, subject, feature, win), a in active.items():
        if scope == sc.name and win == window and a.status == "active" and subject in index:
            first_hit[(index[subject], FEATURE_INDEX[feature])] = e_off
    out = []
    for (s, f), l_first in first_hit.items():
        spec = FEATURES[f]
        subject = subjects[s]
        key = (sc.name, subject, spec.name, window)
        for lday in range(l_first, n_l):
            d = r0 + lday
            code = int(det.severity[s, f, lday])
            v = float(vals[s, f, lday])
            if incomplete[d] or np.isnan(v) or np.isnan(det.z[s, f, lday]) or (
                    code == 0 and bconf[s, f, lday] < 0.5):
                continue
            day = int(day_nums[d])
            if code == 0:  # only read for resolution: no ids, reason or evidence needed
                out.append(AnomalyObservation(
                    key=key, day=day, value=v, mean=float(mean[s, f, lday]),
                    std=float(std[s, f, lday]), z=float(det.z[s, f, lday]), severity=None,
                    direction=None, within_band=bool(det.within_band[s, f, lday]),
                    dimension=spec.dimension))
                continue
            day_type = "workday" if workday[d] else "weekend"
            fid = feature_id(tenant_id, sc.name, subject, spec.name, window, day)
            bid = baseline_id(tenant_id, sc.name, subject, spec.name, window, day_type)
            h = hits[(s, f, lday)]
            first = max(0, d - w + 1)
            summary = event_summary(sc.activity.counters[s, first:d + 1],
                                    int(day_nums[first]), day)
            out.append(AnomalyObservation(
                key=key, day=day, value=h.value, mean=h.mean, std=h.std, z=h.z,
                severity=SEVERITY_NAME[abs(code)], direction="high" if code > 0 else "low",
                within_band=False, dimension=spec.dimension, confidence=h.confidence,
                feature_id=fid, baseline_id=bid,
                reason=describe_deviation(spec.name, window, h.value, h.mean, h.std, h.z),
                evidence=build_evidence([fid], [bid], summary,
                                        {f"{spec.name}.{window}": h.value})))
    return out

