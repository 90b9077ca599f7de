"""Anomalies: z-scores, severities and the anomaly lifecycle (SPEC §5.3).

Detection is vectorised over [N, D] (N series = subjects x features of one window). The
lifecycle is a pure function over plain records: given the active anomalies and the day's (or a
backfill's) observations it returns what to create, update and resolve.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ubi.analytics.baselines import effective_std
from ubi.analytics.ids import anomaly_id
from ubi.analytics.taxonomy import SEVERITY_RANK

#: Severity codes of the vectorised detection (sign = direction: + high, - low).
SEV_NONE, SEV_WARN, SEV_CRITICAL = 0, 1, 2
SEVERITY_NAME = {SEV_WARN: "WARN", SEV_CRITICAL: "CRITICAL"}

#: Baselines below this confidence are warm-up baselines: no anomaly is raised from them.
MIN_BASELINE_CONFIDENCE = 0.5

#: Thresholds are inclusive ("exactly at the threshold fires"); this slack keeps a z that is
#: mathematically on the threshold from missing it by one rounding step of float arithmetic.
THRESHOLD_SLACK = 1e-9

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_start(day: int) -> datetime:
    """UTC midnight at the start of day number ``day``."""
    return _EPOCH + timedelta(days=int(day))


def observed_at(day: int, now: datetime) -> datetime:
    """When a daily value is known: the end of its UTC day, or ``now`` for the running day."""
    return min(day_start(day + 1), now)


def zscores(values: np.ndarray, mean: np.ndarray, std: np.ndarray,
            min_std: float) -> np.ndarray:
    """z = (value - mean) / std with the std = 0 rule of SPEC §5.3.

    std = 0: z = 0 when the value equals the mean, else std is taken as
    ``max(min_std, 0.1 * |mean|)``. NaN where value or baseline is missing.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    dev = values - mean
    with np.errstate(invalid="ignore", divide="ignore"):
        z = dev / effective_std(mean, std, min_std)
    return np.where((std == 0) & (dev == 0), 0.0, z)


def severity_codes(z: np.ndarray, warn: float | np.ndarray,
                   critical: float | np.ndarray) -> np.ndarray:
    """int8 |severity| code per z: 2 if |z| >= critical, 1 if |z| >= warn, else 0 (inclusive)."""
    az = np.abs(np.asarray(z, dtype=np.float64))
    warn = np.asarray(warn, dtype=np.float64)
    critical = np.asarray(critical, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        crit = az >= critical * (1.0 - THRESHOLD_SLACK)
        wrn = az >= warn * (1.0 - THRESHOLD_SLACK)
    return np.where(crit, SEV_CRITICAL, np.where(wrn, SEV_WARN, SEV_NONE)).astype(np.int8)


# --- sampling-noise floors --------------------------------------------------------------------

#: How each feature's value is sampled, for its noise floor: (model, denominator). Models:
#: ``count`` (a count of independent events: Poisson), ``unit`` (a count of days or people,
#: bounded and regular, so not Poisson), ``proportion`` (successes out of the denominator:
#: binomial), ``rate`` (events per unit of the denominator: Poisson over the denominator),
#: ``relative`` (an average length with no sample model: 10 % of the mean, the SPEC §5.3
#: stand-in). Denominators are the ``FeatureCube.denominators`` keys.
NOISE_MODEL: dict[str, tuple[str, str | None]] = {
    "event_count": ("count", None), "commit_count": ("count", None),
    "pr_throughput": ("count", None), "late_night_events": ("count", None),
    "reviews_given": ("count", None), "cross_team_interactions": ("count", None),
    "llm_requests": ("count", None), "override_count": ("count", None),
    "active_days": ("unit", None), "distinct_collaborators": ("unit", None),
    "build_failure_rate": ("proportion", "builds"),
    "test_failure_rate": ("proportion", "tests"),
    "after_hours_ratio": ("proportion", "after_hours_events"),
    "llm_failure_rate": ("proportion", "llm_submitted"),
    "rework_ratio": ("rate", "commits"),
    "context_switch_rate": ("rate", "active_hours"),
    "llm_requests_per_work_item": ("rate", "work_items"),
    "focus_session_avg_minutes": ("relative", None),
}


def is_intensive(feature: str) -> bool:
    """A rate, share or average (``proportion``, ``rate``, ``relative``), as opposed to a sum
    over the window's days: days without events do not pull it down."""
    return NOISE_MODEL[feature][0] in ("proportion", "rate", "relative")


def baseline_windows(window_days: int, alpha: float) -> float:
    """How many windows' worth of events a rate's baseline rests on (``noise_floor``).

    A workday baseline's EWM mean weighs about ``(2 - alpha) / alpha`` observations (its
    effective sample: 19 at alpha 0.1), one per workday, so about ``7/5`` times that in calendar
    days; with the ``w`` days of its windows, the events behind it span ``span + w - 1`` days,
    ``(span + w - 1) / w`` windows (24h: 27, 7d: 4.7, 28d: 1.9)."""
    span = (2.0 - alpha) / alpha * 7.0 / 5.0
    return (span + window_days - 1.0) / window_days


def noise_floor(feature: str, mean: np.ndarray, denominator: np.ndarray | None,
                min_std: float, value: np.ndarray | None = None,
                baseline_n: float | None = None) -> np.ndarray:
    """The smallest credible standard deviation of a feature value, given its baseline mean,
    the value itself and the sample size behind it (arrays broadcast).

    A baseline's std comes from a few weeks of (often overlapping) windows, and a mostly-zero
    count has a std near 0, so ``z`` can be huge for a change of one event; a rate over few
    events moves a lot by chance, and a baseline rate learnt from a few events is itself
    uncertain. Whatever the baseline says, a deviation is only credible when it exceeds the
    sampling noise of the value. For rates and proportions the sampling variance is taken at
    ``m``, the midpoint of the baseline mean and the value (where the value is given): neither
    the baseline's rate nor the observed one alone, so a rate that was 0 by chance in a short
    history does not make its first failures look impossible. Counts use the baseline mean
    (``m = mean``): a count's natural unit, one event, is already the floor.

    - ``count``: ``max(min_std, sqrt(m))`` (one event is never more than 1 sigma; Poisson);
    - ``unit``: ``min_std``;
    - ``proportion`` over ``n``: ``sqrt(p (1 - p) / n)``, ``p = m`` kept at least ``1 / 2n``
      from 0 and 1;
    - ``rate`` over ``n``: ``sqrt(max(m, 1 / n) / n)``;
    - ``relative``: ``0.1 * |mean|`` (the SPEC 5.3 stand-in).

    ``baseline_n`` (the detection passes ``baseline_windows``): the baseline's rate is itself
    estimated from a finite sample, about ``baseline_n`` times the window's, so the two rates
    are compared as two samples: the ``proportion`` and ``rate`` floors are multiplied by
    ``sqrt(1 + 1 / baseline_n)`` (7d windows: 1.10). Found on the generated tenants: a person
    whose builds happened not to fail in the first weeks learns a failure rate of 0.01-0.04,
    and the ordinary failures of a later week then looked anomalous (``rework_loop`` on people
    with nothing planted).

    NaN means and denominators of 0 give a floor of 0 (no floor).
    """
    model, _ = NOISE_MODEL[feature]
    m = np.asarray(mean, dtype=np.float64)
    if value is not None and model in ("proportion", "rate"):
        v = np.asarray(value, dtype=np.float64)
        m = np.where(np.isnan(v), m, 0.5 * (m + v))
    with np.errstate(invalid="ignore", divide="ignore"):
        if model == "count":
            out = np.maximum(min_std, np.sqrt(np.maximum(m, 0.0)))
        elif model == "unit":
            out = np.full(m.shape, float(min_std))
        elif model == "relative":
            out = 0.1 * np.abs(m)
        else:
            n = np.asarray(denominator, dtype=np.float64)
            ok = n > 0
            n1 = np.where(ok, n, 1.0)
            if model == "proportion":
                edge = 0.5 / n1
                p = np.clip(m, edge, 1.0 - edge)
                out = np.sqrt(p * (1.0 - p) / n1)
            else:
                out = np.sqrt(np.maximum(m, 1.0 / n1) / n1)
            if baseline_n is not None and baseline_n > 0:
                out = out * np.sqrt(1.0 + 1.0 / baseline_n)
            out = np.where(ok, out, 0.0)
    return np.where(np.isnan(out), 0.0, out)


@dataclass
class Detection:
    """z-scores and signed severities of N series over D days.

    ``severity`` int8: 0 none, +-1 WARN, +-2 CRITICAL, the sign being the direction (+ high).
    ``within_band``: |value - mean| <= one (effective) std, the resolution condition.
    """

    z: np.ndarray
    severity: np.ndarray
    within_band: np.ndarray


def detect(values: np.ndarray, mean: np.ndarray, std: np.ndarray, confidence: np.ndarray, *,
           warn: float | np.ndarray, critical: float | np.ndarray, min_std: float,
           allow_high: np.ndarray | None = None,
           allow_low: np.ndarray | None = None,
           floor: np.ndarray | None = None,
           zero_std: np.ndarray | None = None) -> Detection:
    """Anomalies of values against their baselines, all arrays [N, D] (thresholds broadcast).

    No anomaly where the value is missing, the baseline's confidence is below 0.5, or the
    caller's ``allow_high`` / ``allow_low`` masks are False (incomplete days; drop-type
    deviations over windows that overlap leave, quiet or incomplete days). Same arithmetic as
    ``zscores`` / ``severity_codes``, fused to keep temporaries few on large arrays.

    ``floor``: optional [N, D] sampling-noise floor (``noise_floor``); where given, the std
    used for z and for the resolution band is ``max(effective std, floor)``. ``zero_std``:
    optional stand-in for a std of 0 (broadcast to [N, D]) replacing the SPEC 5.3
    ``max(min_std, 0.1 |mean|)`` where it is positive; the engine passes the noise floor for
    rates and shares, whose unit is not min_std's (one event).
    """
    values = np.asarray(values, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if floor is not None:
        # The floored std: the SPEC 5.3 stand-in where std is 0, never below the floor. A
        # value equal to the mean still scores z = 0 (the std = 0 rule is kept as is).
        eff = effective_std(mean, std, min_std)
        if zero_std is not None:
            z0 = np.broadcast_to(np.asarray(zero_std, dtype=np.float64), eff.shape)
            eff = np.where((std == 0) & (z0 > 0), z0, eff)
        eff = np.maximum(eff, floor)
        dev = values - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where((std == 0) & (dev == 0), 0.0, dev / eff)
            band = np.abs(dev) <= eff
        return _classify(z, band, confidence, warn, critical, allow_high, allow_low)
    # Few, reused temporaries: on [N, D] arrays of millions of entries allocation dominates.
    z = values - mean
    zero = std == 0
    any_zero = bool(zero.any())
    with np.errstate(invalid="ignore", divide="ignore"):
        band = np.abs(z) <= std
        if any_zero:  # the std = 0 rule: a stand-in std, and z = 0 on the mean itself
            dz = z[zero]
            stand_in = np.maximum(min_std, 0.1 * np.abs(
                mean[zero] if mean.shape == z.shape else np.broadcast_to(mean, z.shape)[zero]))
            band[zero] = np.abs(dz) <= stand_in
            z_zero = np.where(dz == 0, 0.0, dz / stand_in)
        np.divide(z, std, out=z)
        if any_zero:
            z[zero] = z_zero
    return _classify(z, band, confidence, warn, critical, allow_high, allow_low)


def _classify(z: np.ndarray, band: np.ndarray, confidence: np.ndarray,
              warn: float | np.ndarray, critical: float | np.ndarray,
              allow_high: np.ndarray | None, allow_low: np.ndarray | None) -> Detection:
    """Signed severity codes from z (in place where possible); see ``detect``."""
    warn_t = np.asarray(warn, dtype=np.float64) * (1.0 - THRESHOLD_SLACK)
    crit_t = np.asarray(critical, dtype=np.float64) * (1.0 - THRESHOLD_SLACK)
    with np.errstate(invalid="ignore"):
        # NaN compares False everywhere: a missing value or baseline is never anomalous.
        high = z > 0
        code = ((z >= warn_t) | (z <= -warn_t)).view(np.int8)
        code += (z >= crit_t) | (z <= -crit_t)
        code *= np.asarray(confidence) >= MIN_BASELINE_CONFIDENCE
    if allow_high is not None:
        code *= ~high | np.asarray(allow_high, dtype=bool)
    if allow_low is not None:
        code *= high | np.asarray(allow_low, dtype=bool)
    np.negative(code, out=code, where=~high)
    return Detection(z=z, severity=code, within_band=band)


# --- lifecycle -------------------------------------------------------------------------------

AnomalyKey = tuple[str, str, str, str]
"""(actor_scope, subject_id, feature_name, window)."""


@dataclass(frozen=True)
class AnomalyObservation:
    """One evaluated value of a (scope, subject, feature, window) on one UTC day.

    ``severity`` is None when the value is not anomalous; such observations only matter for an
    active anomaly (resolution). ``direction`` is ``high`` / ``low``.
    """

    key: AnomalyKey
    day: int
    value: float
    mean: float
    std: float
    z: float
    severity: str | None
    direction: str | None
    within_band: bool
    dimension: str
    confidence: float = 1.0
    feature_id: str = ""
    baseline_id: str = ""
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActiveAnomaly:
    """An anomaly episode as stored; ``status`` is ``active`` or ``resolved``.

    ``severity`` is the highest reached in the episode; ``z``/``value``/``baseline_*`` are from
    the latest anomalous observation. ``in_band_since`` is the start of the current run of
    observations within one std of the mean (None while out of band); the anomaly resolves when
    that run has lasted ``resolution_hours``.
    """

    anomaly_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    feature_name: str
    window: str
    dimension: str
    severity: str
    direction: str
    z: float
    value: float
    baseline_mean: float
    baseline_std: float
    confidence: float
    first_day: int
    last_day: int
    created_at: datetime
    updated_at: datetime
    status: str = "active"
    resolved_at: datetime | None = None
    in_band_since: datetime | None = None
    feature_ids: tuple[str, ...] = ()
    baseline_id: str = ""
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> AnomalyKey:
        return (self.actor_scope, self.subject_id, self.feature_name, self.window)


@dataclass
class AnomalyChanges:
    """What a reconciliation changed; every episode appears in at most one of the three lists.

    ``created``: new episodes (their final state, possibly already resolved in a backfill);
    ``updated``: episodes that existed before and changed but are still active;
    ``resolved``: episodes that existed before and were resolved now.
    ``active``: the active anomalies after the run (the next run's input).
    """

    created: list[ActiveAnomaly] = field(default_factory=list)
    updated: list[ActiveAnomaly] = field(default_factory=list)
    resolved: list[ActiveAnomaly] = field(default_factory=list)
    active: dict[AnomalyKey, ActiveAnomaly] = field(default_factory=dict)


def reconcile_anomalies(active: Mapping[AnomalyKey, ActiveAnomaly],
                        observations: Iterable[AnomalyObservation], now: datetime, *,
                        tenant_id: str, resolution_hours: int) -> AnomalyChanges:
    """Apply observations (any order; read per key in day order) to the active anomalies.

    - anomalous observation, no active episode: a new episode (id from its first day);
    - anomalous observation, active episode: the episode is updated, its severity never drops
      while active, and any in-band run is broken;
    - non-anomalous observation within 1 std of the mean: starts / continues the in-band run;
      once the run covers ``resolution_hours`` (a daily value covers its whole day) the episode
      is resolved, ``resolved_at`` = when that was known;
    - non-anomalous observation outside 1 std: the in-band run is broken.
    """
    hold = timedelta(hours=resolution_hours)
    state: dict[AnomalyKey, ActiveAnomaly] = {k: a for k, a in active.items()
                                              if a.status == "active"}
    before = dict(state)
    per_key: dict[AnomalyKey, list[AnomalyObservation]] = defaultdict(list)
    for o in observations:
        per_key[o.key].append(o)

    finished: list[ActiveAnomaly] = []  # episodes of this run that ended (resolved)
    for key, obs in per_key.items():
        obs.sort(key=lambda o: o.day)
        for o in obs:
            cur = state.get(key)
            at = observed_at(o.day, now)
            if o.severity is not None:
                if cur is None:
                    scope, subject, feature, window = key
                    state[key] = ActiveAnomaly(
                        anomaly_id=anomaly_id(tenant_id, scope, subject, feature, window, o.day),
                        tenant_id=tenant_id, actor_scope=scope, subject_id=subject,
                        feature_name=feature, window=window, dimension=o.dimension,
                        severity=o.severity, direction=o.direction or "high", z=o.z,
                        value=o.value, baseline_mean=o.mean, baseline_std=o.std,
                        confidence=o.confidence, first_day=o.day, last_day=o.day,
                        created_at=at, updated_at=at,
                        feature_ids=(o.feature_id,) if o.feature_id else (),
                        baseline_id=o.baseline_id, reason=o.reason, evidence=o.evidence)
                else:
                    severity = max(cur.severity, o.severity, key=SEVERITY_RANK.__getitem__)
                    fids = cur.feature_ids
                    if o.feature_id and o.feature_id not in fids:
                        fids = (*fids, o.feature_id)
                    state[key] = replace(
                        cur, severity=severity, direction=o.direction or cur.direction,
                        z=o.z, value=o.value, baseline_mean=o.mean, baseline_std=o.std,
                        confidence=o.confidence, last_day=o.day, updated_at=at,
                        in_band_since=None, feature_ids=fids,
                        baseline_id=o.baseline_id or cur.baseline_id,
                        reason=o.reason or cur.reason, evidence=o.evidence or cur.evidence)
            elif cur is not None:
                if o.within_band:
                    since = cur.in_band_since or day_start(o.day)
                    if at - since >= hold:
                        finished.append(replace(cur, status="resolved", resolved_at=at,
                                                updated_at=at, in_band_since=since))
                        del state[key]
                    elif cur.in_band_since is None:
                        state[key] = replace(cur, in_band_since=since, updated_at=at)
                elif cur.in_band_since is not None:
                    state[key] = replace(cur, in_band_since=None, updated_at=at)

    changes = AnomalyChanges(active=state)
    old_ids = {a.anomaly_id for a in before.values()}
    for a in finished:
        (changes.resolved if a.anomaly_id in old_ids else changes.created).append(a)
    for key, a in state.items():
        if a.anomaly_id not in old_ids:
            changes.created.append(a)
        elif a != before[key]:
            changes.updated.append(a)
    return changes
