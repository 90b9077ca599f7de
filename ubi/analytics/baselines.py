"""Baselines: each subject's own normal per feature, window and day type (SPEC §5.2).

Many series are processed at once: ``values`` is [N, D] with N = subjects x features (one
window), D consecutive UTC days. The recursion loops over days (D <= a few hundred) and is
vectorised over the N series; there is no loop over series.

Algorithm, per series and day type (``workday`` / ``weekend``; a day's type comes from the
tenant's working week, holidays count as weekend days):

1. Only *valid* observations are read: not NaN and flagged valid by the caller (incomplete days,
   quiet days, leave, holidays and days before the subject's first activity are invalid). An
   invalid day is skipped, never read as zero.
2. Warm-up, fewer than ``min_days`` accepted observations: the baseline is the simple moving
   average and the sample variance (ddof=1; 0 with a single observation) of all observations so
   far, computed with Welford's update so a constant series has variance exactly 0. No outlier
   test during warm-up: a handful of points cannot say what an outlier is.
3. From ``min_days`` on: exponentially weighted mean and variance with ``alpha``, seeded by the
   warm-up SMA mean and variance::

       diff = x - mean;  mean += alpha * diff;  var = (1 - alpha) * (var + alpha * diff**2)

4. Outliers: an observation further than ``outlier_sigma`` effective standard deviations from
   the current mean is not absorbed (and counted). The effective std is the std, or for std 0
   the §5.3 rule ``max(min_std, 0.1 * |mean|)``. Because the estimate is not updated with the
   outlier, a second, larger outlier is not masked by the first (twenty 50s, 200, 300: both
   excluded).
5. Level shift: ``LEVEL_SHIFT_RUN`` (10) consecutive same-side outliers of one day type mean the
   level really moved; the baseline is then re-seeded from those observations (their mean and
   sample variance). Ten observations is two working weeks for workdays (five weekends for
   weekend days): a week-long burnout pattern stays anomalous and never becomes "normal" by
   itself, while a real change of role or team is accepted within a fortnight.
6. Re-anchoring (a reader's "new normal", SPEC §5.2): an anchored series reads only the days
   after its anchor day, so its baseline restarts its warm-up there (``anchored_validity``).
7. Confidence = n / (n + min_days), n = accepted observations of that day type: 0 with no data,
   below 0.5 exactly while n < min_days (warm-up), 0.5 at min_days, 0.75 at 3 x min_days, and
   towards 1 with more history.

The running form gives, for every day d, the baseline state from observations strictly before d
(so detection on day d compares d against a baseline that has not seen it); the final form is
the state after the last day plus percentiles p50/p90/p95 (linear interpolation) over the
accepted observations of the last ``history_days`` days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ubi.analytics.tenant_config import TenantConfig

#: Consecutive same-side outliers after which a level shift is accepted (see module docstring).
LEVEL_SHIFT_RUN: int = 10

DAY_TYPE_NAMES: tuple[str, str] = ("workday", "weekend")

#: Re-anchored series: (scope, subject id, feature name) -> UTC day number of the anchor day.
Anchors = Mapping[tuple[str, str, str], int]


def anchored_validity(ok: np.ndarray, scope: str, subject_ids: Sequence[str],
                      features: Sequence[str], anchors: Anchors | None, first_day: int
                      ) -> np.ndarray:
    """``ok`` (bool [D, S*F], day-major, series n = s * F + f, day 0 = UTC day ``first_day``)
    with every day up to and including each anchor day made invalid for the anchored series,
    so their baselines learn only from the days after it. ``ok`` itself (perhaps a read-only
    view) when no anchor concerns this scope's subjects."""
    if not anchors:
        return ok
    n_features = len(features)
    rows = {sid: i for i, sid in enumerate(subject_ids)}
    cols = {name: i for i, name in enumerate(features)}
    cuts = [(rows[sid] * n_features + cols[name], day - first_day + 1)
            for (sc, sid, name), day in anchors.items()
            if sc == scope and sid in rows and name in cols and day >= first_day]
    if not cuts:
        return ok
    out = np.array(ok, dtype=bool)  # a writable copy
    for series, upto in cuts:
        out[:upto, series] = False
    return out


@dataclass(frozen=True)
class BaselineParams:
    """The tenant's ``baseline_algorithm`` settings (SPEC §10)."""

    alpha: float = 0.1
    min_days: int = 7
    outlier_sigma: float = 3.0
    history_days: int = 90
    min_std: float = 1.0
    level_shift_run: int = LEVEL_SHIFT_RUN

    @classmethod
    def from_config(cls, config: TenantConfig) -> BaselineParams:
        alg = config.baseline_algorithm
        return cls(alpha=float(alg["alpha"]), min_days=int(alg["min_days"]),
                   outlier_sigma=float(alg["outlier_sigma"]),
                   history_days=int(alg["history_days"]), min_std=float(alg["min_std"]))

    def as_dict(self) -> dict[str, Any]:
        """The algorithm description stored with every baseline row."""
        return {"name": "sma_warmup_ewm", "alpha": self.alpha, "min_days": self.min_days,
                "outlier_sigma": self.outlier_sigma, "history_days": self.history_days,
                "min_std": self.min_std, "level_shift_run": self.level_shift_run}


def effective_std(mean: np.ndarray, std: np.ndarray, min_std: float) -> np.ndarray:
    """std where positive, else the SPEC §5.3 stand-in ``max(min_std, 0.1 * |mean|)``."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 0, std, np.maximum(min_std, 0.1 * np.abs(mean)))


class Workspace:
    """Reusable output buffers for repeated ``compute_baselines`` calls of one shape.

    On large tenants allocating fresh [D, N] arrays (and the page faults of touching them)
    costs more than the recursion itself; a caller that processes window after window passes
    one workspace so the buffers are reused. Results computed with a workspace are views into
    it: they are valid until the next call that uses the same workspace.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != np.dtype(dtype):
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf


def baseline_confidence(n_obs: np.ndarray, min_days: int) -> np.ndarray:
    """n / (n + min_days): < 0.5 exactly during warm-up, rising towards 1."""
    n = np.asarray(n_obs, dtype=np.float64)
    return n / (n + float(min_days))


@dataclass
class FinalBaselines:
    """State after the last day, per day type: every array is [2, N] (0 workday, 1 weekend)."""

    mean: np.ndarray  # NaN where the day type has no observation
    std: np.ndarray
    n_obs: np.ndarray  # accepted observations
    confidence: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    p95: np.ndarray
    n_outliers: np.ndarray  # observations excluded as outliers (to be logged)
    n_level_shifts: np.ndarray  # level shifts accepted


@dataclass
class RunningBaselines:
    """For each series n and day d: the baseline of d's day type from days strictly before d.

    ``mean``/``std`` are NaN where that day type had no accepted observation yet. ``accepted``
    says whether day d's observation entered its baseline, ``outlier`` whether it was excluded
    as an outlier. All arrays are [N, D].
    """

    mean: np.ndarray
    std: np.ndarray
    n_obs: np.ndarray
    confidence: np.ndarray
    accepted: np.ndarray
    outlier: np.ndarray
    final: FinalBaselines


def _percentiles(obs: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated percentiles along axis 1 of [N, T] ignoring NaN; NaN if none."""
    srt = np.sort(obs, axis=1)  # NaN sorts last
    count = np.sum(~np.isnan(obs), axis=1)
    rows = np.arange(obs.shape[0])
    out = []
    for q in qs:
        pos = (q / 100.0) * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        frac = pos - lo
        if obs.shape[1] == 0:
            out.append(np.full(obs.shape[0], np.nan))
            continue
        v_lo, v_hi = srt[rows, lo], srt[rows, hi]
        val = v_lo + frac * (v_hi - v_lo)
        out.append(np.where(count > 0, val, np.nan))
    return out


def compute_baselines(values: np.ndarray, valid: np.ndarray | None, workday: np.ndarray,
                      params: BaselineParams, *, day_major: bool = False,
                      workspace: Workspace | None = None) -> RunningBaselines:
    """Running and final baselines of N series over D days (see the module docstring).

    ``values`` float [N, D]; ``valid`` bool [N, D] or broadcastable to it (e.g. [D]), None = all
    valid; ``workday`` bool [D], the day type of each day. With ``day_major=True`` ``values``
    and ``valid`` are given as [D, N] (saves a transposing copy); the outputs are [N, D] either
    way. ``workspace``: reuse output buffers across calls (see ``Workspace``).
    """
    _, running = _baselines(values, valid, workday, params, day_major=day_major,
                            workspace=workspace, keep_running=True)
    assert running is not None  # kept when asked for
    return running


def final_baselines(values: np.ndarray, valid: np.ndarray | None, workday: np.ndarray,
                    params: BaselineParams, *, day_major: bool = False,
                    workspace: Workspace | None = None) -> FinalBaselines:
    """Only the final baselines of N series (arguments as ``compute_baselines``).

    The same recursion, without keeping each day's running state (the [N, D] arrays detection
    reads): what a recompute that only stores baselines needs. Identical to
    ``compute_baselines(...).final``.
    """
    final, _ = _baselines(values, valid, workday, params, day_major=day_major,
                          workspace=workspace, keep_running=False)
    return final


def _baselines(values: np.ndarray, valid: np.ndarray | None, workday: np.ndarray,
               params: BaselineParams, *, day_major: bool, workspace: Workspace | None,
               keep_running: bool) -> tuple[FinalBaselines, RunningBaselines | None]:
    values = np.asarray(values, dtype=np.float64)
    # Day-major layout: each step of the loop then reads one contiguous row.
    xs = np.ascontiguousarray(values) if day_major else np.ascontiguousarray(values.T)
    n_days, n_series = xs.shape
    workday = np.asarray(workday, dtype=bool)
    if workday.shape != (n_days,):
        raise ValueError("workday must be a bool array of one entry per day")
    ws = workspace or Workspace()
    ok = np.isnan(xs, out=ws.get("ok", xs.shape, bool))
    np.logical_not(ok, out=ok)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if day_major:
            ok &= np.broadcast_to(v, (n_days, n_series))
        else:
            ok &= np.broadcast_to(v, (n_series, n_days)).T

    alpha, min_days = params.alpha, params.min_days
    sig2, min_std, run_needed = params.outlier_sigma ** 2, params.min_std, params.level_shift_run
    shape = (2, n_series)
    n = np.zeros(shape, dtype=np.int64)
    mean = np.zeros(shape)
    var = np.zeros(shape)
    m2 = np.zeros(shape)  # Welford sum of squared deviations during warm-up
    # Same-side outlier runs, per series and day type (Welford over the run's values).
    run_len = np.zeros(shape, dtype=np.int64)
    run_side = np.zeros(shape, dtype=np.int8)
    run_mean = np.zeros(shape)
    run_m2 = np.zeros(shape)
    n_out = np.zeros(shape, dtype=np.int64)
    n_shift = np.zeros(shape, dtype=np.int64)

    full = (n_days, n_series)
    if keep_running:
        out_mean = ws.get("mean", full, np.float64)
        out_var = ws.get("var", full, np.float64)
        out_n = ws.get("n", full, np.int32)
        outlier = ws.get("outlier", full, bool)
        outlier.fill(False)
    accepted = ws.get("accepted", full, bool)
    accepted.fill(False)
    diff = np.empty(n_series)
    tmp = np.empty(n_series)

    for t in range(n_days):
        k = 0 if workday[t] else 1
        nk, mk, vk = n[k], mean[k], var[k]
        if keep_running:
            out_mean[t] = mk
            out_var[t] = vk
            out_n[t] = nk
        v = ok[t]
        if not v.any():
            continue
        x0 = np.where(v, xs[t], 0.0)  # invalid entries never reach the arithmetic below
        np.subtract(x0, mk, out=diff)

        # Warm-up: Welford's running mean / sample variance over every valid observation.
        warm = v & (nk < min_days)
        if warm.any():
            idx = np.flatnonzero(warm)
            n1 = nk[idx] + 1
            delta = diff[idx]
            new_mean = mk[idx] + delta / n1
            new_m2 = m2[k, idx] + delta * (x0[idx] - new_mean)
            mk[idx] = new_mean
            m2[k, idx] = new_m2
            vk[idx] = np.where(n1 >= 2, new_m2 / np.maximum(n1 - 1, 1), 0.0)
            nk[idx] = n1
            accepted[t, idx] = True
            ewm = v & ~warm
            np.subtract(x0, mk, out=diff)
        else:
            ewm = v
        if not ewm.any():
            continue

        # EWM with outlier exclusion: |diff| > sigma * effective std, compared squared.
        d2 = diff * diff
        np.multiply(vk, sig2, out=tmp)
        is_out = d2 > tmp
        zero_var = np.flatnonzero(ewm & (vk == 0))
        if zero_var.size:  # the std = 0 stand-in of SPEC 5.3
            floor = np.maximum(min_std, 0.1 * np.abs(mk[zero_var]))
            is_out[zero_var] = d2[zero_var] > sig2 * floor * floor
        is_out &= ewm
        take = ewm & ~is_out
        np.multiply(d2, alpha, out=tmp)
        tmp += vk
        tmp *= 1.0 - alpha
        np.copyto(vk, tmp, where=take)
        np.multiply(diff, alpha, out=tmp)
        np.add(mk, tmp, out=mk, where=take)
        nk += take
        accepted[t] |= take
        if keep_running:
            outlier[t] = is_out

        # Level shifts: runs of same-side outliers, reset by any accepted observation.
        reset = np.flatnonzero(take & (run_len[k] > 0))
        if reset.size:
            run_len[k, reset] = 0
            run_side[k, reset] = 0
        out_idx = np.flatnonzero(is_out)
        if out_idx.size:
            n_out[k, out_idx] += 1
            x = x0[out_idx]
            side = np.sign(diff[out_idx]).astype(np.int8)
            rl, rm, rv = run_len[k, out_idx], run_mean[k, out_idx], run_m2[k, out_idx]
            cont = run_side[k, out_idx] == side
            rl1 = np.where(cont, rl + 1, 1)
            rdelta = np.where(cont, x - rm, 0.0)
            rm1 = np.where(cont, rm + rdelta / rl1, x)
            rv1 = np.where(cont, rv + rdelta * (x - rm1), 0.0)
            shift = rl1 >= run_needed
            if shift.any():
                # Re-seed from the run: its mean and sample variance become the baseline.
                sidx = out_idx[shift]
                mk[sidx] = rm1[shift]
                vk[sidx] = rv1[shift] / np.maximum(rl1[shift] - 1, 1)
                nk[sidx] += rl1[shift]
                n_shift[k, sidx] += 1
                rl1 = np.where(shift, 0, rl1)
                side = np.where(shift, 0, side).astype(np.int8)
            run_len[k, out_idx] = rl1
            run_side[k, out_idx] = side
            run_mean[k, out_idx] = rm1
            run_m2[k, out_idx] = rv1

    # Final state and percentiles over the accepted observations of the last history_days.
    has = n > 0
    recent = np.zeros(n_days, dtype=bool)
    recent[max(0, n_days - params.history_days):] = True
    p50, p90, p95 = (np.full(shape, np.nan) for _ in range(3))
    for k, day_is_workday in enumerate((True, False)):
        cols = recent & (workday == day_is_workday)
        if not cols.any():
            continue
        # float32 halves the sort's memory traffic; percentiles are descriptive statistics.
        days = np.flatnonzero(cols)
        obs = xs[days].astype(np.float32)
        np.copyto(obs, np.float32(np.nan), where=~accepted[days])
        obs = np.ascontiguousarray(obs.T)  # [N, T], each series' days contiguous for the sort
        p50[k], p90[k], p95[k] = _percentiles(obs, (50.0, 90.0, 95.0))
    final = FinalBaselines(
        mean=np.where(has, mean, np.nan), std=np.where(has, np.sqrt(var), np.nan),
        n_obs=n, confidence=baseline_confidence(n, min_days), p50=p50, p90=p90, p95=p95,
        n_outliers=n_out, n_level_shifts=n_shift)
    if not keep_running:
        return final, None
    none_yet = np.equal(out_n, 0, out=ws.get("none", full, bool))
    np.copyto(out_mean, np.nan, where=none_yet)
    out_std = np.sqrt(out_var, out=out_var)
    np.copyto(out_std, np.nan, where=none_yet)
    # float32 is exact enough for confidence (n / (n + min_days) is 0.5 exactly at min_days).
    conf = ws.get("confidence", full, np.float32)
    np.copyto(conf, out_n, casting="unsafe")
    np.divide(conf, conf + np.float32(min_days), out=conf)
    return final, RunningBaselines(mean=out_mean.T, std=out_std.T, n_obs=out_n.T,
                                   confidence=conf.T, accepted=accepted.T, outlier=outlier.T,
                                   final=final)
