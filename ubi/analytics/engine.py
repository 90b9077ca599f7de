"""The one entry point of the analytics core: ``analyse_tenant`` (SPEC §5).

The storage / pipeline layer loads one tenant's daily rollups into a ``DailyActivity`` and calls
``analyse_tenant`` once per tenant. The same call serves the nightly / incremental case (one
evaluated day) and a backfill or the demo (a range of evaluated days): features and running
baselines are computed over the whole loaded range, detection, scores and signals over the
evaluated days. Everything returned is plain data to persist:

- ``features``: one ``FeatureTable`` per (scope, window), columnar; ``iter_rows()`` yields
  ``FeatureRow`` records (for COPY / bulk upserts);
- ``baselines``: one ``BaselineTable`` per (scope, window), the final state per (subject,
  feature, day_type); ``iter_rows()`` yields ``BaselineRow`` records;
- ``anomalies``: ``AnomalyChanges`` (created / updated / resolved, plus the new active set);
- ``scores``: one ``ScoreTable`` per (scope, window); ``iter_rows()`` yields ``ScoreRow``;
- ``signals``: ``SignalChanges`` (every new version in order, bookkeeping-only updates, the
  new active set).

Load ``history_days`` plus the longest window (28) of days before the first evaluated day so
baselines and windows are complete. Tenant isolation: the function only ever sees the one
tenant's activity; nothing here can reach another tenant's data.

Memory is bounded per window: each window is processed and reduced to the compact arrays the
rules need (signed severities, sparse hit records, a few context features) before the next.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.aggregates import (
    GroupAggregate,
    PeerGroups,
    cohort_aggregate,
    eligible_groups,
    group_percentile,
    peer_groups,
    team_aggregate,
    tenant_aggregate,
)
from ubi.analytics.anomalies import (
    NOISE_MODEL,
    SEVERITY_NAME,
    ActiveAnomaly,
    AnomalyChanges,
    AnomalyKey,
    AnomalyObservation,
    Detection,
    detect,
    is_intensive,
    noise_floor,
    reconcile_anomalies,
)
from ubi.analytics.baselines import (
    DAY_TYPE_NAMES,
    Anchors,
    BaselineParams,
    FinalBaselines,
    RunningBaselines,
    Workspace,
    anchored_validity,
    compute_baselines,
    effective_std,
    final_baselines,
)
from ubi.analytics.calendar import day_from_number, day_number, workday_mask
from ubi.analytics.explain import build_evidence, describe_deviation, describe_score, event_summary
from ubi.analytics.features import (
    FeatureCube,
    PreparedActivity,
    compute_features,
    prepare_activity,
    rolling_sum,
)
from ubi.analytics.ids import baseline_id, feature_id, feature_ids, score_id
from ubi.analytics.presence import first_active_day, leave_days, quiet_days
from ubi.analytics.rule_inputs import HitInfo, HitTable, PeerContext, RuleInputs, RuleWindow
from ubi.analytics.scores import ScoreBlock, compute_scores, score_features
from ubi.analytics.signal_lifecycle import Signal, SignalChanges, SignalKey, reconcile_signals
from ubi.analytics.signals import CONTEXT_FEATURES, LOOKBACK_DAYS, evaluate_rules
from ubi.analytics.taxonomy import DIMENSIONS, FEATURE_INDEX, FEATURE_NAMES, FEATURES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

ScoreKey = tuple[str, str, str, str]
"""(actor_scope, subject_id, dimension, window)."""

N_FEATURES = len(FEATURE_NAMES)
_DIMENSION_OF = np.array([f.dimension for f in FEATURES])
_DIRECTION = np.array([f.health_direction for f in FEATURES], dtype=np.float64)
#: Features that are rates, shares or averages (not sums over the window's days).
_INTENSIVE = np.array([is_intensive(f.name) for f in FEATURES])


# --- inputs and outputs ----------------------------------------------------------------------

_EVENT_COUNT = FEATURE_INDEX["event_count"]

@dataclass
class PreviousState:
    """What the last run left active: anomalies, signals and the latest score per key."""

    anomalies: Mapping[AnomalyKey, ActiveAnomaly] = field(default_factory=dict)
    signals: Mapping[SignalKey, Signal] = field(default_factory=dict)
    scores: Mapping[ScoreKey, float] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> PreviousState:
        return cls()


@dataclass(frozen=True)
class FeatureRow:
    """One feature value (SPEC §5.1 feature row). ``value`` None = null."""

    feature_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    feature_name: str
    dimension: str
    window: str
    window_start: date
    window_end: date
    day: int
    value: float | None
    confidence: float
    metadata: Mapping[str, Any]


@dataclass
class FeatureTable:
    """Feature values of one scope and window on the evaluated days, columnar.

    ``values`` [S, E, F] (E evaluated days ``days``, F in ``FEATURE_NAMES`` order, NaN = null),
    ``confidence`` [S, E], ``exists`` [S, E]: whether rows exist (``stored_cells``: none for
    groups under ``min_team_size``, subjects before their first event, windows without one).
    """

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    days: np.ndarray
    values: np.ndarray
    confidence: np.ndarray
    exists: np.ndarray

    @property
    def n_rows(self) -> int:
        applicable = sum(1 for f in FEATURES if self.window in f.windows)
        return int(self.exists.sum()) * applicable

    def iter_rows(self) -> Iterator[FeatureRow]:
        w = WINDOWS[self.window]
        feats = [(i, f) for i, f in enumerate(FEATURES) if self.window in f.windows]
        cells_s, cells_e = np.nonzero(self.exists)
        # Ids in bulk: row k is cell k // len(feats), feature feats[k % len(feats)].
        ids = feature_ids(self.tenant_id, self.scope, self.window, self.subject_ids,
                          FEATURE_NAMES, np.repeat(cells_s, len(feats)),
                          np.tile([i for i, _ in feats], len(cells_s)),
                          np.repeat(self.days[cells_e], len(feats))).astype(str).tolist()
        k = 0
        for s, e in zip(cells_s.tolist(), cells_e.tolist(), strict=True):
            day = int(self.days[e])
            subject = self.subject_ids[s]
            conf = float(self.confidence[s, e])
            for i, spec in feats:
                v = float(self.values[s, e, i])
                yield FeatureRow(
                    feature_id=ids[k],
                    tenant_id=self.tenant_id, actor_scope=self.scope, subject_id=subject,
                    feature_name=spec.name, dimension=spec.dimension, window=self.window,
                    window_start=day_from_number(day - w + 1), window_end=day_from_number(day),
                    day=day, value=None if np.isnan(v) else v, confidence=conf,
                    metadata={"volume_only": spec.volume_only, "unit": spec.unit})
                k += 1


@dataclass(frozen=True)
class BaselineRow:
    """One stored baseline (SPEC §5.2). Statistics are None where undefined."""

    baseline_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    feature_name: str
    dimension: str
    window: str
    day_type: str
    mean: float | None
    std_dev: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    n_observations: int
    confidence: float
    n_outliers: int
    n_level_shifts: int
    last_recomputed_at: datetime
    algorithm: Mapping[str, Any]


@dataclass
class BaselineTable:
    """Final baselines of one scope and window; ``final`` arrays are [2, S*F] (series s*F+f)."""

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    final: FinalBaselines
    params: BaselineParams
    computed_at: datetime

    @property
    def n_rows(self) -> int:
        return int((self.final.n_obs > 0).sum())

    def iter_rows(self) -> Iterator[BaselineRow]:
        """Rows with at least one observation (a baseline without data is not stored)."""
        algorithm = self.params.as_dict()
        fin = self.final

        def opt(a: np.ndarray, k: int, n: int) -> float | None:
            v = float(a[k, n])
            return None if np.isnan(v) else v

        for k, n in zip(*np.nonzero(fin.n_obs > 0), strict=True):
            s, f = divmod(int(n), N_FEATURES)
            spec = FEATURES[f]
            subject = self.subject_ids[s]
            day_type = DAY_TYPE_NAMES[k]
            yield BaselineRow(
                baseline_id=baseline_id(self.tenant_id, self.scope, subject, spec.name,
                                        self.window, day_type),
                tenant_id=self.tenant_id, actor_scope=self.scope, subject_id=subject,
                feature_name=spec.name, dimension=spec.dimension, window=self.window,
                day_type=day_type, mean=opt(fin.mean, k, n), std_dev=opt(fin.std, k, n),
                p50=opt(fin.p50, k, n), p90=opt(fin.p90, k, n), p95=opt(fin.p95, k, n),
                n_observations=int(fin.n_obs[k, n]), confidence=float(fin.confidence[k, n]),
                n_outliers=int(fin.n_outliers[k, n]),
                n_level_shifts=int(fin.n_level_shifts[k, n]),
                last_recomputed_at=self.computed_at, algorithm=algorithm)


@dataclass(frozen=True)
class ScoreRow:
    """One dimension score (SPEC §5.4); ``previous_score`` None when there was none."""

    score_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    dimension: str
    window: str
    day: int
    score: float
    confidence: float
    previous_score: float | None
    n_features: int
    reason: str


@dataclass
class ScoreTable:
    """Scores of one scope and window on the evaluated days; ``block`` arrays [S, 4, E].

    ``health_z`` [S, F, E] float32: the health-oriented z of each usable feature (NaN
    otherwise), used for the reason's main contributors.
    """

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    days: np.ndarray
    block: ScoreBlock
    health_z: np.ndarray

    @property
    def n_rows(self) -> int:
        return int((~np.isnan(self.block.score)).sum())

    def latest(self) -> dict[ScoreKey, float]:
        """Last score per (scope, subject, dimension, window): the next run's ``previous``."""
        out: dict[ScoreKey, float] = {}
        sc = self.block.score
        for s, g, e in zip(*np.nonzero(~np.isnan(sc)), strict=True):
            out[(self.scope, self.subject_ids[s], DIMENSIONS[g], self.window)] = float(
                sc[s, g, e])
        return out

    def iter_rows(self) -> Iterator[ScoreRow]:
        b = self.block
        for s, g, e in zip(*np.nonzero(~np.isnan(b.score)), strict=True):
            dim = DIMENSIONS[g]
            idx = np.flatnonzero(dim == _DIMENSION_OF)
            zs = self.health_z[s, idx, e]
            order = [int(i) for i in idx[np.argsort(-np.abs(np.nan_to_num(zs)))]
                     if not np.isnan(self.health_z[s, i, e])][:3]
            contributors = [(FEATURE_NAMES[i], self.window, float(self.health_z[s, i, e]))
                            for i in order]
            prev = float(b.previous[s, g, e])
            day = int(self.days[e])
            yield ScoreRow(
                score_id=score_id(self.tenant_id, self.scope, self.subject_ids[s], dim,
                                  self.window, day),
                tenant_id=self.tenant_id, actor_scope=self.scope,
                subject_id=self.subject_ids[s], dimension=dim, window=self.window, day=day,
                score=float(b.score[s, g, e]), confidence=float(b.confidence[s, g, e]),
                previous_score=None if np.isnan(prev) else prev,
                n_features=int(b.n_features[s, g, e]),
                reason=describe_score(dim, prev, float(b.score[s, g, e]), contributors))


@dataclass
class TenantAnalysis:
    """Everything ``analyse_tenant`` computed for one tenant (see the module docstring).

    ``evaluated_days``: UTC day numbers evaluated (incomplete days included: they get features
    but no anomalies or signals). ``quiet_days``: day numbers read as quiet. ``stats``: counts
    the service logs and exports as metrics (outliers excluded, level shifts accepted, ...).
    """

    tenant_id: str
    evaluated_days: list[int]
    features: list[FeatureTable]
    baselines: list[BaselineTable]
    anomalies: AnomalyChanges
    scores: list[ScoreTable]
    signals: SignalChanges
    quiet_days: list[int]
    stats: dict[str, int]

    def next_state(self) -> PreviousState:
        """The ``previous`` argument of the next run."""
        scores: dict[ScoreKey, float] = {}
        for t in self.scores:
            scores.update(t.latest())
        return PreviousState(anomalies=dict(self.anomalies.active),
                             signals=dict(self.signals.active), scores=scores)


# --- the pipeline ----------------------------------------------------------------------------

@dataclass
class _Scope:
    name: str
    activity: DailyActivity
    aggregate: GroupAggregate | None  # None for the actor scope
    leave: np.ndarray  # bool [S, D]
    first_active: np.ndarray  # int64 [S]


def _window_masks(scope: _Scope, w: int, eligible: np.ndarray, incomplete: np.ndarray,
                  quiet: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(baseline valid, allow_high, allow_low, allow_low_intensive) masks [S, D] for one scope
    and window.

    - a baseline observation needs the whole window loaded and after the subject's first
      activity, no incomplete or leave day in the window, at most one quiet day per 7 days of
      window and the day itself not quiet, and (groups) the aggregate to exist;
    - high deviations: any day that is complete and whose aggregate exists;
    - low (drop-type) deviations additionally need a clean window: loaded, after the first
      activity, no incomplete, quiet or leave day in it.
    """
    n_s, n_d = scope.leave.shape
    days = np.arange(n_d)
    loaded = days >= w - 1
    after_first = (days[None, :] - w + 1) >= scope.first_active[:, None]
    inc = np.broadcast_to(incomplete, (n_s, n_d))
    hard = rolling_sum((scope.leave | inc).astype(np.float64), w) > 0
    quiet_n = rolling_sum(np.broadcast_to(quiet, (n_s, n_d)).astype(np.float64), w)
    base_ok = (loaded[None, :] & after_first & ~hard & (quiet_n <= w // 7) & ~quiet[None, :]
               & eligible)
    allow_high = ~inc & eligible
    allow_low = allow_high & loaded[None, :] & after_first & ~hard & (quiet_n == 0)
    # Intensive features (rates, shares, averages) are not depressed by days without events:
    # a holiday or a week of leave in the window leaves fewer samples, not a lower value. Their
    # drops only need a loaded window after the first activity and no incomplete day in it.
    inc_n = rolling_sum(inc.astype(np.float64), w)
    allow_low_intensive = allow_high & loaded[None, :] & after_first & (inc_n == 0)
    return base_ok, allow_high, allow_low, allow_low_intensive


def _established(scope: _Scope, workday: np.ndarray, quiet: np.ndarray, incomplete: np.ndarray,
                 min_days: int) -> np.ndarray:
    """bool [S, D]: at least ``min_days`` workdays observed before the day (from the subject's
    first activity, leave, quiet and incomplete days not counted): the subject's workday
    baselines are past warm-up. Before that no rule fires for it (issue 6: no signal during
    an actor's warm-up), percentile and fixed-threshold rules included."""
    n_d = scope.leave.shape[1]
    days = np.arange(n_d)
    counted = ((days[None, :] >= scope.first_active[:, None]) & workday[None, :]
               & ~scope.leave & ~quiet[None, :] & ~incomplete[None, :])
    before = np.cumsum(counted, axis=1) - counted
    return before >= min_days


def _scope_list(activity: DailyActivity, config: TenantConfig, tenant_id: str) -> list[_Scope]:
    scopes = [_Scope("actor", activity, None, leave_days(activity, config),
                     first_active_day(activity))]
    for agg in (team_aggregate(activity), cohort_aggregate(activity),
                tenant_aggregate(activity, tenant_id)):
        n_g = len(agg.group_ids)
        scopes.append(_Scope(agg.scope, agg.activity, agg,
                             np.zeros((n_g, activity.n_days), dtype=bool),
                             first_active_day(agg.activity)))
    return scopes


def _scope_cube(activity: DailyActivity, sc: _Scope, window: str, config: TenantConfig,
                incomplete: np.ndarray, prepared: PreparedActivity
                ) -> tuple[FeatureCube, np.ndarray]:
    """The feature cube of one scope and window (groups below ``min_team_size`` blanked) and
    the eligibility mask [S, D]."""
    cube = compute_features(sc.activity, window, config, incomplete, prepared)
    if sc.aggregate is not None:
        eligible = eligible_groups(activity, sc.aggregate, window, config)
        cube.values[~eligible] = np.nan
    else:
        eligible = np.ones((sc.activity.n_subjects, activity.n_days), dtype=bool)
    return cube, eligible


def stored_cells(values: np.ndarray, eligible: np.ndarray, first_active: np.ndarray,
                 day_index: np.ndarray) -> np.ndarray:
    """bool [S, E]: the (subject, day) cells that have feature rows, the one rule every writer
    and the consistency check follow. ``values`` [S, E, F] and ``eligible`` [S, E] on the days
    ``day_index`` (positions in the subjects' activity, whose first event is at
    ``first_active`` [S]). A row exists for eligible subjects (groups of at least
    ``min_team_size``) from their first event on, where the window holds at least one event:
    a window without one has only trivial values (zero counts, null rates), so a long history
    of a rarely active subject stays small."""
    return (eligible & (day_index[None, :] >= first_active[:, None])
            & (values[:, :, _EVENT_COUNT] > 0))


def _feature_table(tenant_id: str, sc: _Scope, window: str, cube: FeatureCube,
                   eligible: np.ndarray, e0: int, day_nums: np.ndarray) -> FeatureTable:
    values = cube.values[:, e0:, :].copy()
    exists = stored_cells(values, eligible[:, e0:], sc.first_active,
                          np.arange(e0, len(day_nums)))
    return FeatureTable(tenant_id, sc.name, window, list(cube.subject_ids), day_nums[e0:],
                        values, cube.confidence[:, e0:].copy(), exists)


def tenant_features(activity: DailyActivity, config: TenantConfig, *, tenant_id: str,
                    incomplete_days: np.ndarray | None, from_day: int) -> list[FeatureTable]:
    """The stored feature rows of every scope and window for the days from ``from_day`` (UTC
    day number) to the last loaded day, exactly as ``analyse_tenant`` computes them, without
    baselines, detection or rules (a features refresh, the full recompute, the consistency
    check). Load ``max(WINDOWS)`` - 1 days before ``from_day`` so every window is whole."""
    n_d = activity.n_days
    e0 = int(from_day) - day_number(activity.start_day)
    if not 0 <= e0 < n_d:
        raise ValueError(f"from_day {from_day} is outside the loaded days")
    incomplete = (np.zeros(n_d, dtype=bool) if incomplete_days is None
                  else np.asarray(incomplete_days, dtype=bool).reshape(n_d))
    day_nums = day_number(activity.start_day) + np.arange(n_d, dtype=np.int64)
    tables = []
    for sc in _scope_list(activity, config, tenant_id):
        prepared = prepare_activity(sc.activity)
        for window in config.windows:
            cube, eligible = _scope_cube(activity, sc, window, config, incomplete, prepared)
            tables.append(_feature_table(tenant_id, sc, window, cube, eligible, e0, day_nums))
    return tables


def _scope_window(activity: DailyActivity, sc: _Scope, window: str, config: TenantConfig,
                  incomplete: np.ndarray, quiet: np.ndarray, prepared: PreparedActivity,
                  anchors: Anchors | None) -> tuple[FeatureCube, np.ndarray,
                             tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                             np.ndarray, np.ndarray]:
    """The feature cube of one scope and window (groups below ``min_team_size`` blanked), the
    eligibility mask [S, D], the ``_window_masks`` and the baseline recursion's inputs: values
    and validity as day-major [D, S*F] series (n = s * F + f), re-anchored series reading only
    the days after their anchor. Shared by the full analysis and the baselines-only one, so
    both compute baselines from the very same inputs."""
    n_s, n_d = sc.activity.n_subjects, activity.n_days
    cube, eligible = _scope_cube(activity, sc, window, config, incomplete, prepared)
    masks = _window_masks(sc, WINDOWS[window], eligible, incomplete, quiet)
    xs = np.ascontiguousarray(cube.values.transpose(1, 0, 2)).reshape(n_d, n_s * N_FEATURES)
    ok = np.broadcast_to(masks[0].T[:, :, None], (n_d, n_s, N_FEATURES)).reshape(
        n_d, n_s * N_FEATURES)
    ok = anchored_validity(ok, sc.name, cube.subject_ids, FEATURE_NAMES, anchors,
                           day_number(activity.start_day))
    return cube, eligible, masks, xs, ok


def analyse_tenant(activity: DailyActivity, config: TenantConfig, *, tenant_id: str,
                   incomplete_days: np.ndarray | None, evaluate_from_day: int,
                   previous: PreviousState | None, now: datetime,
                   baselines_only: bool = False, anchors: Anchors | None = None
                   ) -> TenantAnalysis:
    """Features, baselines, anomalies, scores and signals of one tenant.

    ``activity``: the tenant's actors over D consecutive UTC days (load ``history_days`` + 28
    days before ``evaluate_from_day``). ``incomplete_days``: bool [D] (ingestion gaps, SPEC §9),
    None = none. ``evaluate_from_day``: UTC day number (days since 1970-01-01) of the first day
    to evaluate; every day from it to the last loaded day is evaluated. ``previous``: the
    active anomalies / signals and latest scores of the last run. ``now``: timezone-aware UTC
    time of the run (stamps lifecycle changes; no clock is read here).

    ``baselines_only``: compute the final baselines and nothing else (the nightly recompute
    stores nothing more): ``baselines``, ``evaluated_days``, ``quiet_days`` and the baseline
    counts of ``stats`` are those of the full analysis; ``features`` and ``scores`` are empty,
    ``anomalies`` and ``signals`` are empty changes (``previous`` is not read), so such a
    result is no state to carry into the next run.

    ``anchors``: re-anchored baselines (readers' "new normal", SPEC §5.2), by (scope, subject
    id, feature name): those series' baselines read only the days after the anchor day.
    """
    n_d = activity.n_days
    start = day_number(activity.start_day)
    e0 = int(evaluate_from_day) - start
    if not 0 <= e0 < n_d:
        raise ValueError(f"evaluate_from_day {evaluate_from_day} is outside the loaded days "
                         f"{start}..{start + n_d - 1}")
    previous = previous or PreviousState.empty()
    incomplete = (np.zeros(n_d, dtype=bool) if incomplete_days is None
                  else np.asarray(incomplete_days, dtype=bool).reshape(n_d))
    day_nums = start + np.arange(n_d, dtype=np.int64)
    workday = workday_mask(day_nums, config)
    quiet = quiet_days(activity, config)
    params = BaselineParams.from_config(config)
    r0 = max(0, e0 - LOOKBACK_DAYS)  # first day the rules read
    scopes = _scope_list(activity, config, tenant_id)
    if baselines_only:
        return _analyse_baselines(activity, config, tenant_id, scopes, incomplete, quiet,
                                  workday, params, day_nums, e0, now, anchors)
    peers = peer_groups(activity, config)
    warn_crit = np.array([config.thresholds(f.dimension) for f in FEATURES])  # [F, 2]

    features: list[FeatureTable] = []
    baselines: list[BaselineTable] = []
    score_tables: list[ScoreTable] = []
    observations: list[AnomalyObservation] = []
    rule_windows: dict[str, dict[str, RuleWindow]] = {sc.name: {} for sc in scopes}
    peer_arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stats = {"outliers_excluded": 0, "level_shifts": 0, "anomalous_values": 0}
    # One set of baseline buffers per scope, reused window after window (see Workspace).
    workspaces = {sc.name: Workspace() for sc in scopes}
    prepared = {sc.name: prepare_activity(sc.activity) for sc in scopes}

    for window in config.windows:
        w = WINDOWS[window]
        for sc in scopes:
            cube, eligible, masks, xs, ok = _scope_window(activity, sc, window, config,
                                                          incomplete, quiet, prepared[sc.name],
                                                          anchors)
            _, allow_high, allow_low, allow_low_int = masks
            running = compute_baselines(xs, ok, workday, params, day_major=True,
                                        workspace=workspaces[sc.name])
            del xs, ok
            stats["outliers_excluded"] += int(running.final.n_outliers.sum())
            stats["level_shifts"] += int(running.final.n_level_shifts.sum())
            baselines.append(BaselineTable(tenant_id, sc.name, window, list(cube.subject_ids),
                                           running.final, params, now))

            det, parts = _detect_range(cube, running, r0, warn_crit, params.min_std,
                                       allow_high, allow_low, allow_low_int)
            vals, mean, std, bconf = parts
            e_off = e0 - r0
            stats["anomalous_values"] += int(np.count_nonzero(det.severity[:, :, e_off:]))

            features.append(_feature_table(tenant_id, sc, window, cube, eligible, e0,
                                           day_nums))  # rows of the evaluated days

            # Scores over clean windows only (absence and gaps never read as unhealthy).
            usable = (bconf >= 0.5) & ~np.isnan(det.z) & allow_low[:, None, r0:]
            seed = _score_seed(previous.scores, sc.name, cube.subject_ids, window)
            block = compute_scores(det.z[:, :, e_off:], usable[:, :, e_off:],
                                   bconf[:, :, e_off:], cube.confidence[:, e0:], window, seed)
            scored = np.zeros(N_FEATURES, dtype=bool)
            for idx in score_features(window).values():
                scored[idx] = True
            hz = np.where(usable[:, :, e_off:] & scored[None, :, None],
                          det.z[:, :, e_off:] * _DIRECTION[None, :, None],
                          np.nan).astype(np.float32)
            score_tables.append(ScoreTable(tenant_id, sc.name, window, list(cube.subject_ids),
                                           day_nums[e0:], block, hz))

            # Sparse hit records, anomaly observations, compact rule inputs.
            hits = _hit_records(det, vals, mean, std, bconf, cube.confidence[:, r0:])
            observations += _anomaly_observations(
                tenant_id, sc, window, cube, det, hits, vals, mean, std, bconf,
                r0, e0, day_nums, workday, incomplete, previous.anomalies)
            rule_windows[sc.name][window] = RuleWindow(
                severity=det.severity, hits=hits, values=vals.astype(np.float32),
                window_confidence=cube.confidence[:, r0:], drop_ok=allow_low[:, r0:],
                drop_ok_intensive=allow_low_int[:, r0:],
                # copies: mean / std / bconf are views into the reused workspace
                context={f: (vals[:, FEATURE_INDEX[f], :].copy(),
                             mean[:, FEATURE_INDEX[f], :].copy(),
                             std[:, FEATURE_INDEX[f], :].copy(),
                             (bconf[:, FEATURE_INDEX[f], :] >= 0.5)
                             & ~np.isnan(vals[:, FEATURE_INDEX[f], :]))
                         for f in CONTEXT_FEATURES.get(window, ())})
            if sc.name == "actor":
                days = np.arange(n_d)
                complete = (days[None, :] >= w - 1) & (
                    (days[None, :] - w + 1) >= sc.first_active[:, None])
                _collect_peer_inputs(peer_arrays, cube, window, r0, complete)
            del cube, running, det

    anomalies = reconcile_anomalies(previous.anomalies, observations, now, tenant_id=tenant_id,
                                    resolution_hours=config.resolution_hours)

    candidates = []
    for sc in scopes:
        at_work, at_work_so_far = sc.activity.presence()
        inputs = RuleInputs(
            tenant_id=tenant_id, scope=sc.name, subject_ids=list(sc.activity.subject_ids),
            day0=int(day_nums[r0]), eval_offset=e0 - r0, workday=workday[r0:],
            present=sc.activity.counter("event_count")[:, r0:] > 0,
            counters=sc.activity.counters[:, r0:, :], windows=rule_windows[sc.name],
            peers=_peer_context(peers, peer_arrays) if sc.name == "actor" else None,
            established=_established(sc, workday, quiet, incomplete,
                                     params.min_days)[:, r0:],
            subject_types=list(sc.activity.actor_types), quiet=quiet[r0:],
            leave=sc.leave[:, r0:], at_work=at_work[:, r0:],
            at_work_so_far=at_work_so_far[:, r0:])
        candidates += evaluate_rules(inputs, config)
    evaluated = [int(d) for d, inc in zip(day_nums[e0:], incomplete[e0:], strict=True)
                 if not inc]
    signals = reconcile_signals(previous.signals, candidates, evaluated, now,
                                tenant_id=tenant_id)
    return TenantAnalysis(tenant_id=tenant_id, evaluated_days=[int(d) for d in day_nums[e0:]],
                          features=features, baselines=baselines, anomalies=anomalies,
                          scores=score_tables, signals=signals,
                          quiet_days=[int(d) for d in day_nums[quiet]], stats=stats)


def _analyse_baselines(activity: DailyActivity, config: TenantConfig, tenant_id: str,
                       scopes: list[_Scope], incomplete: np.ndarray, quiet: np.ndarray,
                       workday: np.ndarray, params: BaselineParams, day_nums: np.ndarray,
                       e0: int, now: datetime, anchors: Anchors | None) -> TenantAnalysis:
    """``analyse_tenant(..., baselines_only=True)``: the full analysis' baselines (same cubes,
    masks and recursion, ``final_baselines``) without the running state, features, detection,
    scores and rules."""
    baselines: list[BaselineTable] = []
    stats = {"outliers_excluded": 0, "level_shifts": 0, "anomalous_values": 0}
    workspaces = {sc.name: Workspace() for sc in scopes}
    prepared = {sc.name: prepare_activity(sc.activity) for sc in scopes}
    for window in config.windows:
        for sc in scopes:
            cube, _, _, xs, ok = _scope_window(activity, sc, window, config, incomplete, quiet,
                                               prepared[sc.name], anchors)
            final = final_baselines(xs, ok, workday, params, day_major=True,
                                    workspace=workspaces[sc.name])
            del xs, ok
            stats["outliers_excluded"] += int(final.n_outliers.sum())
            stats["level_shifts"] += int(final.n_level_shifts.sum())
            baselines.append(BaselineTable(tenant_id, sc.name, window, list(cube.subject_ids),
                                           final, params, now))
            del cube
    return TenantAnalysis(tenant_id=tenant_id, evaluated_days=[int(d) for d in day_nums[e0:]],
                          features=[], baselines=baselines, anomalies=AnomalyChanges(),
                          scores=[], signals=SignalChanges(),
                          quiet_days=[int(d) for d in day_nums[quiet]], stats=stats)


def _detect_range(cube: FeatureCube, running: RunningBaselines, r0: int, warn_crit: np.ndarray,
                  min_std: float, allow_high: np.ndarray, allow_low: np.ndarray,
                  allow_low_intensive: np.ndarray | None = None
                  ) -> tuple[Detection, tuple[np.ndarray, ...]]:
    """Detection over days r0.. as [S, F, L] arrays; also returns (values, mean, std, conf).

    ``allow_low_intensive``: the drop mask of rates, shares and averages (``_window_masks``).
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
    for f, spec in enumerate(FEATURES):
        denom_name = NOISE_MODEL[spec.name][1]
        denom = cube.denominators.get(denom_name) if denom_name else None
        floor[:, f, :] = noise_floor(spec.name, mean[:, f, :],
                                     None if denom is None else denom[:, r0:], min_std,
                                     vals[:, f, :])
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


def _hit_records(det: Detection, vals: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 bconf: np.ndarray, wconf: np.ndarray) -> HitTable:
    ss, ff, ll = np.nonzero(det.severity)
    return HitTable(det.severity.shape, ss, ff, ll, vals[ss, ff, ll], mean[ss, ff, ll],
                    std[ss, ff, ll], det.z[ss, ff, ll], bconf[ss, ff, ll] * wconf[ss, ll])


def _anomaly_observations(tenant_id: str, sc: _Scope, window: str, cube: FeatureCube,
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


def _score_seed(previous: Mapping[ScoreKey, float], scope: str, subjects: list[str],
                window: str) -> np.ndarray:
    seed = np.full((len(subjects), len(DIMENSIONS)), np.nan)
    if previous:
        for s, subject in enumerate(subjects):
            for g, dim in enumerate(DIMENSIONS):
                v = previous.get((scope, subject, dim, window))
                if v is not None:
                    seed[s, g] = v
    return seed


def _collect_peer_inputs(store: dict[str, tuple[np.ndarray, np.ndarray]], cube: FeatureCube,
                         window: str, r0: int, complete: np.ndarray) -> None:
    """Keep the actor values the peer percentiles need. Members: actors active in the window
    whose window is complete (fully loaded, after their first activity): a 28-day figure over
    the first ten days of someone's history is not a 28-day figure, and would rank newcomers
    and everyone at the start of a range as if they reviewed little."""
    active = (cube.feature("event_count")[:, r0:] > 0) & complete[:, r0:]
    if window == "28d":
        store["reviews"] = (cube.feature("reviews_given")[:, r0:].copy(), active)
    if window == "7d":
        store["rpwi"] = (cube.feature("llm_requests_per_work_item")[:, r0:].copy(), active)


def _peer_context(peers: PeerGroups, arrays: Mapping[str, tuple[np.ndarray, np.ndarray]]
                  ) -> PeerContext | None:
    if not arrays:
        return None
    n_g = len(peers.labels)
    any_arr = next(iter(arrays.values()))[0]
    nan = np.full((n_g, any_arr.shape[1]), np.nan)
    zero = np.zeros((n_g, any_arr.shape[1]), dtype=np.int64)
    r_p50, r_p90, r_n = nan, nan, zero
    if "reviews" in arrays:
        v, m = arrays["reviews"]
        r_p90, r_n = group_percentile(v, peers.index, n_g, 90.0, m)
        r_p50, _ = group_percentile(v, peers.index, n_g, 50.0, m)
    p10, p90, n = nan, nan, zero
    if "rpwi" in arrays:
        v, m = arrays["rpwi"]
        p10, n = group_percentile(v, peers.index, n_g, 10.0, m)
        p90, _ = group_percentile(v, peers.index, n_g, 90.0, m)
    return PeerContext(group=peers.index, labels=peers.labels, reviews_p90=r_p90,
                       reviews_count=r_n, rpwi_p10=p10, rpwi_p90=p90, rpwi_count=n,
                       reviews_p50=r_p50,
                       reviews_member=arrays["reviews"][1] if "reviews" in arrays else None,
                       rpwi_member=arrays["rpwi"][1] if "rpwi" in arrays else None)
