"""Leave and quiet days: absence is not disengagement (SPEC §5.5, §9).

- Leave: an actor with no events on ``LEAVE_MIN_WORKDAYS`` (5) consecutive workdays of the
  tenant is on leave for that whole run; the non-working days inside the run (a weekend in the
  middle of two weeks off) are leave too when the actor had no events on them.
- Quiet days: tenant holidays, and days on which most of the tenant's usually active actors
  have no events. "Usually active" for a day = active on at least ``QUIET_USUAL_SHARE`` of the
  days of the same type (workday / weekend) in the previous ``QUIET_LOOKBACK_DAYS``, with at
  least ``QUIET_MIN_HISTORY`` such days seen. A day is quiet when at least
  ``QUIET_MIN_USUAL_ACTORS`` actors, and at least ``QUIET_MIN_USUAL_SHARE`` of the actors active
  in the lookback, are usually active, and more than ``QUIET_ABSENT_SHARE`` of them have no
  events. The share guard matters on weekends: in a large tenant a few actors look "usually
  active" on weekends by chance, and their ordinary absence must not make every weekend
  quiet.

Both feed the baseline validity masks and the drop-type rules: leave and quiet days never enter
a baseline and never raise ``engagement_drop``.
"""

from __future__ import annotations

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.calendar import day_number, workday_mask
from ubi.analytics.features import rolling_sum
from ubi.analytics.tenant_config import TenantConfig

LEAVE_MIN_WORKDAYS = 5
QUIET_LOOKBACK_DAYS = 28
QUIET_USUAL_SHARE = 0.5
QUIET_MIN_HISTORY = 3
QUIET_MIN_USUAL_ACTORS = 3
QUIET_MIN_USUAL_SHARE = 0.2
QUIET_ABSENT_SHARE = 0.5


def day_numbers(activity: DailyActivity) -> np.ndarray:
    """int64 [D] UTC day numbers of the activity's days."""
    return day_number(activity.start_day) + np.arange(activity.n_days, dtype=np.int64)


def active_mask(activity: DailyActivity) -> np.ndarray:
    """bool [S, D]: the subject had at least one event that day."""
    return activity.counter("event_count") > 0


def leave_days(activity: DailyActivity, config: TenantConfig) -> np.ndarray:
    """bool [S, D]: days that read as leave (see the module docstring)."""
    active = active_mask(activity)
    n_s, n_d = active.shape
    workday = workday_mask(day_numbers(activity), config)
    wd_cols = np.flatnonzero(workday)
    leave = np.zeros((n_s, n_d), dtype=bool)
    if wd_cols.size == 0 or n_s == 0:
        return leave
    idle = ~active[:, wd_cols]  # [S, W] in workday order
    n_w = idle.shape[1]
    pos = np.arange(n_w)
    # Length of the idle run through each position: next break - previous break - 1.
    prev_break = np.maximum.accumulate(np.where(~idle, pos, -1), axis=1)
    next_break = np.minimum.accumulate(np.where(~idle, pos, n_w)[:, ::-1], axis=1)[:, ::-1]
    run = next_break - prev_break - 1
    leave_w = idle & (run >= LEAVE_MIN_WORKDAYS)
    leave[:, wd_cols] = leave_w
    # Non-workdays strictly between two leave workdays of the same run (consecutive workdays
    # that are both idle belong to one run), if the actor was idle on them.
    other = np.flatnonzero(~workday)
    if other.size:
        after = np.searchsorted(wd_cols, other)  # index of the next workday
        inside = (after > 0) & (after < n_w)
        other, after = other[inside], after[inside]
        if other.size:
            between = leave_w[:, after - 1] & leave_w[:, after]
            leave[:, other] = between & ~active[:, other]
    return leave


def quiet_days(activity: DailyActivity, config: TenantConfig) -> np.ndarray:
    """bool [D]: tenant holidays and days most usually-active actors had no events."""
    days = day_numbers(activity)
    quiet = np.zeros(activity.n_days, dtype=bool)
    if config.holidays:
        quiet |= np.isin(days, np.array([day_number(h) for h in config.holidays]))
    if activity.n_subjects == 0 or activity.n_days == 0:
        return quiet
    active = active_mask(activity).astype(np.float64)
    workday = workday_mask(days, config)
    usual_share = np.zeros(active.shape)
    enough = np.zeros(active.shape[1], dtype=bool)
    for same_type in (workday, ~workday):
        t = same_type.astype(np.float64)
        # Counts over the previous QUIET_LOOKBACK_DAYS days, the day itself excluded.
        n_days_prior = rolling_sum(t, QUIET_LOOKBACK_DAYS + 1) - t
        n_active_prior = rolling_sum(active * t, QUIET_LOOKBACK_DAYS + 1) - active * t
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n_days_prior > 0, n_active_prior / np.maximum(n_days_prior, 1), 0)
        usual_share = np.where(same_type[None, :], share, usual_share)
        enough = np.where(same_type, n_days_prior >= QUIET_MIN_HISTORY, enough)
    usual = (usual_share >= QUIET_USUAL_SHARE) & enough[None, :]
    n_usual = usual.sum(axis=0)
    recent = rolling_sum(active, QUIET_LOOKBACK_DAYS + 1) - active > 0  # active before d
    n_recent = recent.sum(axis=0)
    n_absent = (usual & (active == 0)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mostly_absent = n_absent > QUIET_ABSENT_SHARE * n_usual
    quiet |= ((n_usual >= QUIET_MIN_USUAL_ACTORS) & (n_usual >= QUIET_MIN_USUAL_SHARE * n_recent)
              & mostly_absent)
    return quiet


def first_active_day(activity: DailyActivity) -> np.ndarray:
    """int64 [S]: index of each subject's first day with events (D if none)."""
    active = active_mask(activity)
    first = np.argmax(active, axis=1)
    return np.where(active.any(axis=1), first, activity.n_days).astype(np.int64)
