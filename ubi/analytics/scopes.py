"""The scopes an analysis runs on and their masks: which values count where.

A ``Scope`` is one of actor, team, cohort or tenant: its ``DailyActivity`` (a group aggregate's
subjects are groups), leave days and each subject's first active day. Per scope and window:

- ``scope_cube``: the feature cube, groups below ``min_team_size`` blanked, and the
  eligibility mask;
- ``window_masks``: valid baseline observations and the days on which high and low (drop)
  deviations may be reported;
- ``scope_window``: the cube, masks and the baseline recursion's inputs, shared by the full
  analysis and the baselines-only one;
- ``established``: whether a subject is past its baseline warm-up (rules fire only then);
- ``stored_cells`` / ``feature_table``: the (subject, day) cells that have feature rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.aggregates import (
    GroupAggregate,
    cohort_aggregate,
    eligible_groups,
    team_aggregate,
    tenant_aggregate,
)
from ubi.analytics.baselines import Anchors, anchored_validity
from ubi.analytics.calendar import day_number
from ubi.analytics.features import (
    N_FEATURES,
    FeatureCube,
    PreparedActivity,
    compute_features,
    rolling_sum,
)
from ubi.analytics.presence import first_active_day, leave_days
from ubi.analytics.results import FeatureTable
from ubi.analytics.taxonomy import FEATURE_INDEX, FEATURE_NAMES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

_EVENT_COUNT = FEATURE_INDEX["event_count"]


@dataclass
class Scope:
    """One scope of the analysis (actor, team, cohort or tenant)."""

    name: str
    activity: DailyActivity
    aggregate: GroupAggregate | None  # None for the actor scope
    leave: np.ndarray  # bool [S, D]
    first_active: np.ndarray  # int64 [S]


def window_masks(scope: Scope, w: int, eligible: np.ndarray, incomplete: np.ndarray,
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


def established(scope: Scope, workday: np.ndarray, quiet: np.ndarray, incomplete: np.ndarray,
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


def scope_list(activity: DailyActivity, config: TenantConfig, tenant_id: str) -> list[Scope]:
    scopes = [Scope("actor", activity, None, leave_days(activity, config),
                    first_active_day(activity))]
    for agg in (team_aggregate(activity), cohort_aggregate(activity),
                tenant_aggregate(activity, tenant_id)):
        n_g = len(agg.group_ids)
        scopes.append(Scope(agg.scope, agg.activity, agg,
                            np.zeros((n_g, activity.n_days), dtype=bool),
                            first_active_day(agg.activity)))
    return scopes


def scope_cube(activity: DailyActivity, sc: Scope, window: str, config: TenantConfig,
               incomplete: np.ndarray, prepared: PreparedActivity,
               timings: dict[str, float] | None = None) -> tuple[FeatureCube, np.ndarray]:
    """The feature cube of one scope and window (groups below ``min_team_size`` blanked) and
    the eligibility mask [S, D]; ``timings`` as ``compute_features``'."""
    cube = compute_features(sc.activity, window, config, incomplete, prepared, timings)
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


def feature_table(tenant_id: str, sc: Scope, window: str, cube: FeatureCube,
                  eligible: np.ndarray, e0: int, day_nums: np.ndarray) -> FeatureTable:
    values = cube.values[:, e0:, :].copy()
    exists = stored_cells(values, eligible[:, e0:], sc.first_active,
                          np.arange(e0, len(day_nums)))
    return FeatureTable(tenant_id, sc.name, window, list(cube.subject_ids), day_nums[e0:],
                        values, cube.confidence[:, e0:].copy(), exists)



def scope_window(activity: DailyActivity, sc: Scope, window: str, config: TenantConfig,
                 incomplete: np.ndarray, quiet: np.ndarray, prepared: PreparedActivity,
                 anchors: Anchors | None) -> tuple[FeatureCube, np.ndarray,
                             tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                             np.ndarray, np.ndarray]:
    """The feature cube of one scope and window (groups below ``min_team_size`` blanked), the
    eligibility mask [S, D], the ``window_masks`` and the baseline recursion's inputs: values
    and validity as day-major [D, S*F] series (n = s * F + f), re-anchored series reading only
    the days after their anchor. Shared by the full analysis and the baselines-only one, so
    both compute baselines from the very same inputs."""
    n_s, n_d = sc.activity.n_subjects, activity.n_days
    cube, eligible = scope_cube(activity, sc, window, config, incomplete, prepared)
    masks = window_masks(sc, WINDOWS[window], eligible, incomplete, quiet)
    xs = np.ascontiguousarray(cube.values.transpose(1, 0, 2)).reshape(n_d, n_s * N_FEATURES)
    ok = np.broadcast_to(masks[0].T[:, :, None], (n_d, n_s, N_FEATURES)).reshape(
        n_d, n_s * N_FEATURES)
    ok = anchored_validity(ok, sc.name, cube.subject_ids, FEATURE_NAMES, anchors,
                           day_number(activity.start_day))
    return cube, eligible, masks, xs, ok

