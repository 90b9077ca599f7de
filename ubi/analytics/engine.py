"""The one entry point of the analytics core: ``analyse_tenant`` (SPEC §5).

The storage / pipeline layer loads one tenant's daily rollups into a ``DailyActivity`` and calls
``analyse_tenant`` once per tenant. The same call serves the nightly / incremental case (one
evaluated day) and a backfill or the demo (a range of evaluated days): features and running
baselines are computed over the whole loaded range, detection, scores and signals over the
evaluated days. Everything returned is plain data to persist:

- ``features``: one ``FeatureTable`` per (scope, window), columnar;
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

The result tables live in ``ubi.analytics.results``; the loop takes its scopes and masks from
``scopes``, runs detection and builds anomaly observations with ``detection``, and collects the
peer percentiles with ``peers``. ``tenant_features`` is the features-only path (the same rows
as ``analyse_tenant``), ``analyse_tenant(..., baselines_only=True)`` the baselines-only one.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from datetime import datetime

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.aggregates import peer_groups
from ubi.analytics.anomalies import AnomalyChanges, AnomalyObservation, reconcile_anomalies
from ubi.analytics.baselines import (
    Anchors,
    BaselineParams,
    Workspace,
    compute_baselines,
    final_baselines,
)
from ubi.analytics.calendar import day_number, workday_mask
from ubi.analytics.detection import anomaly_observations, detect_range, hit_records
from ubi.analytics.features import N_FEATURES, prepare_activity
from ubi.analytics.peers import collect_peer_inputs, peer_context
from ubi.analytics.presence import quiet_days, usual_workday_share
from ubi.analytics.results import (
    BaselineTable,
    FeatureTable,
    PreviousState,
    ScoreKey,
    ScoreTable,
    TenantAnalysis,
)
from ubi.analytics.rule_inputs import RuleInputs, RuleWindow
from ubi.analytics.scopes import (
    Scope,
    established,
    feature_table,
    scope_cube,
    scope_list,
    scope_window,
)
from ubi.analytics.scores import compute_scores, score_features
from ubi.analytics.signal_lifecycle import SignalChanges, reconcile_signals
from ubi.analytics.signals import CONTEXT_FEATURES, LOOKBACK_DAYS, evaluate_rules
from ubi.analytics.taxonomy import DIMENSIONS, FEATURE_INDEX, FEATURES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

_DIRECTION = np.array([f.health_direction for f in FEATURES], dtype=np.float64)


def tenant_features(activity: DailyActivity, config: TenantConfig, *, tenant_id: str,
                    incomplete_days: np.ndarray | None, from_day: int,
                    timings: dict[str, float] | None = None,
                    scopes: Collection[str] | None = None) -> list[FeatureTable]:
    """The stored feature rows of every scope and window for the days from ``from_day`` (UTC
    day number) to the last loaded day, exactly as ``analyse_tenant`` computes them, without
    baselines, detection or rules (a features refresh, the full recompute, the consistency
    check). Load ``max(WINDOWS)`` - 1 days before ``from_day`` so every window is whole.
    ``timings``: seconds per feature name, over every scope and window (``compute_features``).
    ``scopes``: only these scopes' tables (a group refresh needs no actor cube: group features
    come from the groups' summed activity, not from the actors' features)."""
    n_d = activity.n_days
    e0 = int(from_day) - day_number(activity.start_day)
    if not 0 <= e0 < n_d:
        raise ValueError(f"from_day {from_day} is outside the loaded days")
    incomplete = (np.zeros(n_d, dtype=bool) if incomplete_days is None
                  else np.asarray(incomplete_days, dtype=bool).reshape(n_d))
    day_nums = day_number(activity.start_day) + np.arange(n_d, dtype=np.int64)
    tables = []
    for sc in scope_list(activity, config, tenant_id):
        if scopes is not None and sc.name not in scopes:
            continue
        prepared = prepare_activity(sc.activity)
        for window in config.windows:
            cube, eligible = scope_cube(activity, sc, window, config, incomplete, prepared,
                                        timings)
            tables.append(feature_table(tenant_id, sc, window, cube, eligible, e0, day_nums))
    return tables



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
    scopes = scope_list(activity, config, tenant_id)
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
    baseline_s = dict.fromkeys((sc.name for sc in scopes), 0.0)

    for window in config.windows:
        w = WINDOWS[window]
        for sc in scopes:
            cube, eligible, masks, xs, ok = scope_window(activity, sc, window, config,
                                                         incomplete, quiet, prepared[sc.name],
                                                         anchors)
            _, allow_high, allow_low, allow_low_int = masks
            t0 = time.perf_counter()
            running = compute_baselines(xs, ok, workday, params, day_major=True,
                                        workspace=workspaces[sc.name])
            baseline_s[sc.name] += time.perf_counter() - t0
            del xs, ok
            stats["outliers_excluded"] += int(running.final.n_outliers.sum())
            stats["level_shifts"] += int(running.final.n_level_shifts.sum())
            baselines.append(BaselineTable(tenant_id, sc.name, window, list(cube.subject_ids),
                                           running.final, params, now))

            det, parts = detect_range(cube, running, r0, warn_crit, params.min_std,
                                      allow_high, allow_low, allow_low_int,
                                      alpha=params.alpha)
            vals, mean, std, bconf = parts
            e_off = e0 - r0
            stats["anomalous_values"] += int(np.count_nonzero(det.severity[:, :, e_off:]))

            features.append(feature_table(tenant_id, sc, window, cube, eligible, e0,
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
            hits = hit_records(det, vals, mean, std, bconf, cube.confidence[:, r0:])
            observations += anomaly_observations(
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
                collect_peer_inputs(peer_arrays, cube, window, r0, complete)
            del cube, running, det

    anomalies = reconcile_anomalies(previous.anomalies, observations, now, tenant_id=tenant_id,
                                    resolution_hours=config.resolution_hours)

    candidates = []
    for sc in scopes:
        at_work, at_work_so_far = sc.activity.presence()
        share, known = usual_workday_share(at_work, workday & ~quiet, sc.leave)
        inputs = RuleInputs(
            tenant_id=tenant_id, scope=sc.name, subject_ids=list(sc.activity.subject_ids),
            day0=int(day_nums[r0]), eval_offset=e0 - r0, workday=workday[r0:],
            present=sc.activity.counter("event_count")[:, r0:] > 0,
            counters=sc.activity.counters[:, r0:, :], windows=rule_windows[sc.name],
            peers=peer_context(peers, peer_arrays) if sc.name == "actor" else None,
            established=established(sc, workday, quiet, incomplete,
                                    params.min_days)[:, r0:],
            subject_types=list(sc.activity.actor_types), quiet=quiet[r0:],
            leave=sc.leave[:, r0:], at_work=at_work[:, r0:],
            at_work_so_far=at_work_so_far[:, r0:], usual_share=share[:, r0:],
            usual_known=known[:, r0:])
        candidates += evaluate_rules(inputs, config)
    evaluated = [int(d) for d, inc in zip(day_nums[e0:], incomplete[e0:], strict=True)
                 if not inc]
    signals = reconcile_signals(previous.signals, candidates, evaluated, now,
                                tenant_id=tenant_id)
    return TenantAnalysis(tenant_id=tenant_id, evaluated_days=[int(d) for d in day_nums[e0:]],
                          features=features, baselines=baselines, anomalies=anomalies,
                          scores=score_tables, signals=signals,
                          quiet_days=[int(d) for d in day_nums[quiet]], stats=stats,
                          baseline_seconds=baseline_s)


def _analyse_baselines(activity: DailyActivity, config: TenantConfig, tenant_id: str,
                       scopes: list[Scope], incomplete: np.ndarray, quiet: np.ndarray,
                       workday: np.ndarray, params: BaselineParams, day_nums: np.ndarray,
                       e0: int, now: datetime, anchors: Anchors | None) -> TenantAnalysis:
    """``analyse_tenant(..., baselines_only=True)``: the full analysis' baselines (same cubes,
    masks and recursion, ``final_baselines``) without the running state, features, detection,
    scores and rules."""
    baselines: list[BaselineTable] = []
    stats = {"outliers_excluded": 0, "level_shifts": 0, "anomalous_values": 0}
    workspaces = {sc.name: Workspace() for sc in scopes}
    prepared = {sc.name: prepare_activity(sc.activity) for sc in scopes}
    baseline_s = dict.fromkeys((sc.name for sc in scopes), 0.0)
    for window in config.windows:
        for sc in scopes:
            t0 = time.perf_counter()
            cube, _, _, xs, ok = scope_window(activity, sc, window, config, incomplete, quiet,
                                              prepared[sc.name], anchors)
            final = final_baselines(xs, ok, workday, params, day_major=True,
                                    workspace=workspaces[sc.name])
            baseline_s[sc.name] += time.perf_counter() - t0
            del xs, ok
            stats["outliers_excluded"] += int(final.n_outliers.sum())
            stats["level_shifts"] += int(final.n_level_shifts.sum())
            baselines.append(BaselineTable(tenant_id, sc.name, window, list(cube.subject_ids),
                                           final, params, now))
            del cube
    return TenantAnalysis(tenant_id=tenant_id, evaluated_days=[int(d) for d in day_nums[e0:]],
                          features=[], baselines=baselines, anomalies=AnomalyChanges(),
                          scores=[], signals=SignalChanges(),
                          quiet_days=[int(d) for d in day_nums[quiet]], stats=stats,
                          baseline_seconds=baseline_s)



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
