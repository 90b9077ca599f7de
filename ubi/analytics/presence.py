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

- Scattered absences (``scattered_absences``): fewer active days made of days off here and
  there, the presence side of ``engagement_drop`` (SPEC §5.5).

Presence is read on each actor's own local days (``DailyActivity.presence``): a person in
UTC-8 who takes Tuesday off still has events on UTC Tuesday (Monday evening) and UTC Wednesday
(Wednesday afternoon), so on UTC days no day off of theirs would ever show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.calendar import day_number, workday_mask
from ubi.analytics.features import rolling_sum
from ubi.analytics.rule_inputs import RuleInputs
from ubi.analytics.taxonomy import FEATURE_BY_NAME, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

LEAVE_MIN_WORKDAYS = 5
QUIET_LOOKBACK_DAYS = 28
QUIET_USUAL_SHARE = 0.5
QUIET_MIN_HISTORY = 3
QUIET_MIN_USUAL_ACTORS = 3
QUIET_MIN_USUAL_SHARE = 0.2
QUIET_ABSENT_SHARE = 0.5
#: Scattered absences (SPEC §5.5): fewer active days confirms at once, without waiting for the
#: 7-day trigger's persistence, when the workdays away within the window were at least this
#: many separate runs: days off here and there, not one spell (a few days of sickness).
DROP_ABSENCE_RUNS = 2
#: ... and enough workdays away (holidays not counted): at least ``DROP_WEEK_AWAY`` of the
#: last 5 workdays, or ``DROP_MIN_AWAY`` of the last ``DROP_SPAN_WORKDAYS``, SPEC §5.5's "two
#: or three scattered days off every week for two weeks". Two single days off in a week of an
#: otherwise full fortnight (a sick day and an appointment) made every false scattered drop
#: on the generated tenants ("active on 7 or 8 of the last 10 workdays"); the planted drops
#: fired at 5 or 6 of 10.
DROP_WEEK_AWAY = 3
DROP_MIN_AWAY = 4
DROP_SPAN_WORKDAYS = 10
#: The person's usual presence on workdays (``usual_workday_share``): the share of the
#: ``USUAL_WORKDAYS`` counted workdays before the span (leave days left out) with events;
#: unknown with fewer than ``USUAL_MIN_WORKDAYS`` of them.
USUAL_WORKDAYS = 40
USUAL_MIN_WORKDAYS = 10


def day_numbers(activity: DailyActivity) -> np.ndarray:
    """int64 [D] UTC day numbers of the activity's days."""
    return day_number(activity.start_day) + np.arange(activity.n_days, dtype=np.int64)


def active_mask(activity: DailyActivity) -> np.ndarray:
    """bool [S, D]: the subject had at least one event on that local day."""
    return activity.presence()[0]


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


def absence_runs(absent: np.ndarray, counted: np.ndarray, w: int) -> np.ndarray:
    """int64 [S, L]: separate runs of ``absent`` days among the ``counted`` days [L] (workdays
    that are not quiet) within the ``w`` days up to each day; a run that began before the
    window counts once."""
    n_s, n_l = absent.shape
    wd = np.flatnonzero(counted)
    if wd.size == 0:
        return np.zeros((n_s, n_l), dtype=np.int64)
    absent = absent & counted[None, :]
    prev_absent = np.zeros_like(absent)
    prev_absent[:, wd[1:]] = absent[:, wd[:-1]]  # the previous counted day's, per counted day
    starts = rolling_sum((absent & ~prev_absent).astype(np.float64), w)
    # A run already going at the window's first counted day started before it: count it too.
    first = np.searchsorted(wd, np.arange(n_l) - w + 1)
    col = wd[np.minimum(first, wd.size - 1)]
    inside = (first < wd.size) & (col <= np.arange(n_l))
    carried = absent[:, col] & prev_absent[:, col] & inside[None, :]
    return (np.rint(starts) + carried).astype(np.int64)


def away_in_span(absent: np.ndarray, counted: np.ndarray, last: int) -> np.ndarray:
    """int64 [S, L]: ``absent`` days among the last ``last`` ``counted`` days [L] up to each
    day (inclusive; all counted days so far while fewer are loaded)."""
    n_s, n_l = absent.shape
    wd = np.flatnonzero(counted)
    if wd.size == 0:
        return np.zeros((n_s, n_l), dtype=np.int64)
    csum = np.zeros((n_s, n_l + 1), dtype=np.int64)
    csum[:, 1:] = np.cumsum(absent & counted[None, :], axis=1)
    j = np.searchsorted(wd, np.arange(n_l), side="right") - last
    start = np.where(j >= 0, wd[np.clip(j, 0, None)], 0)
    return csum[:, 1:] - csum[:, start]


@dataclass
class WorkdayPresence:
    """Workdays at work in the last ``last`` counted workdays against the person's usual,
    per subject-day [S, L] (``workday_presence``)."""

    last: int
    present: np.ndarray  # int64: counted workdays with events in the span
    counted: np.ndarray  # int64: counted workdays in the span (``last`` once enough loaded)
    mean: np.ndarray  # the usual count over as many workdays: counted x usual share
    std: np.ndarray  # binomial, at least ``min_std`` and the weekly spread scaled
    z: np.ndarray
    usable: np.ndarray  # bool: enough workdays before the span to know the usual share


def usual_workday_share(at_work: np.ndarray, counted: np.ndarray, leave: np.ndarray,
                        last: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(share [S, L], known bool [S, L]): each subject's usual share of counted workdays
    (workdays that are not quiet) at work, over the ``USUAL_WORKDAYS`` counted workdays
    before the span of the last ``last`` up to each day, leave days left out (leave is not
    the person's usual presence either way); known with at least ``USUAL_MIN_WORKDAYS`` of
    them. The engine computes it over the whole loaded history (``RuleInputs.usual_share``):
    more weeks than the rules' lookback, so a nightly run judges as a backfill does."""
    n_s, n_l = at_work.shape
    wd = np.flatnonzero(counted)
    if wd.size == 0:
        return np.ones((n_s, n_l)), np.zeros((n_s, n_l), dtype=bool)
    away_w = (~at_work[:, wd] & ~leave[:, wd]).astype(np.int64)  # [S, W] in workday order
    known_w = (~leave[:, wd]).astype(np.int64)
    c_away = np.concatenate([np.zeros((n_s, 1), np.int64), np.cumsum(away_w, axis=1)], axis=1)
    c_known = np.concatenate([np.zeros((n_s, 1), np.int64), np.cumsum(known_w, axis=1)],
                             axis=1)
    hi = np.searchsorted(wd, np.arange(n_l), side="right")  # counted workdays up to each day
    lo = np.maximum(hi - last, 0)  # the span's first counted workday
    first = np.maximum(lo - USUAL_WORKDAYS, 0)
    n_prior = c_known[:, lo] - c_known[:, first]
    away_prior = c_away[:, lo] - c_away[:, first]
    share = np.where(n_prior > 0, 1.0 - away_prior / np.maximum(n_prior, 1), 1.0)
    return share, n_prior >= USUAL_MIN_WORKDAYS


def workday_presence(absent: np.ndarray, counted: np.ndarray, share: np.ndarray,
                     known: np.ndarray, last: int, min_std: float,
                     weekly_std: np.ndarray | None = None) -> WorkdayPresence:
    """Days at work counted on workdays only (SPEC §5.5: a workday without events is evidence
    for ``engagement_drop``), so weekend days worked do not hide workdays away: present on
    how many of the last ``last`` counted workdays, against the person's usual ``share``
    (``usual_workday_share``; usable where ``known``). The spread is the binomial one of that
    share over the span, at least ``min_std`` (one workday, as ``active_days``' own noise
    floor) and, given ``weekly_std`` (the person's ``active_days`` 7d baseline std), at least
    that scaled to the span."""
    n_span = np.minimum(np.cumsum(counted), last).astype(np.int64)[None, :]
    present = n_span - away_in_span(absent, counted, last)
    mean = n_span * share
    std = np.maximum(np.sqrt(n_span * share * (1.0 - share)), min_std)
    if weekly_std is not None:
        # Days at work come in clusters (weeks on, weeks off): the binomial spread of
        # independent days understates how much a person's weeks vary. The spread of their
        # own 7-day active days (a week's 5 workdays), scaled to the span, is a floor.
        std = np.maximum(std, np.nan_to_num(weekly_std) * n_span / 5.0)
    z = (present - mean) / std
    return WorkdayPresence(last, present.astype(np.int64),
                           np.broadcast_to(n_span, present.shape).astype(np.int64), mean,
                           std, z, known.copy())


@dataclass
class Scattered:
    """Fewer active days made of scattered days off, per subject-day [S, L]."""

    fired: np.ndarray
    severity: np.ndarray  # int8, negative: the drop's severity code
    value: np.ndarray  # active days in the window, a quiet day without events counted active
    runs: np.ndarray
    #: Workdays at work in the last 5 counted workdays against the person's usual share
    #: (``workday_presence``).
    workdays: tuple[WorkdayPresence, ...] = ()
    #: bool [S, L]: fired by the workdays at work, where ``active_days`` 7d with its days off
    #: worked was not anomalous (worked weekend days hid the workdays away).
    by_workdays: np.ndarray | None = None
    z_workdays: np.ndarray | None = None  # z of the last 5 workdays against the usual
    off_worked: np.ndarray | None = None  # days off at work within the 7 days


def scattered_absences(inputs: RuleInputs, config: TenantConfig) -> Scattered | None:
    """SPEC §5.5: fewer active days (``active_days`` 7d; or, with days off worked in the 7
    days, the workdays at work in the last 5 against the person's usual share,
    ``workday_presence``, with active days and events 7d below baseline), as scattered days
    off (at least
    ``DROP_ABSENCE_RUNS`` separate runs of workdays away in the 7 days, and ``DROP_WEEK_AWAY``
    of the last 5 workdays or ``DROP_MIN_AWAY`` of the last ``DROP_SPAN_WORKDAYS`` away, never
    a run of leave).
    Judged at once, on every workday with events or away (not a quiet day): the absences
    themselves are the repeated evidence a 7-day trigger's persistence otherwise waits for,
    and one spell of sickness is one run. A tenant holiday (a quiet day) neither counts as a
    day away nor spoils the week: the ``active_days`` value is read with each quiet workday
    the subject had no events counted at the subject's own rate of presence over the other
    workdays of the window (1 for someone at work on all of them), against the same
    baseline."""
    key = ("active_days", "7d")
    rw = inputs.windows.get("7d")
    if rw is None or key[0] not in rw.context:
        return None
    w = WINDOWS["7d"]
    n_s, n_l = inputs.present.shape
    quiet = np.zeros(n_l, dtype=bool) if inputs.quiet is None else inputs.quiet
    leave = np.zeros((n_s, n_l), dtype=bool) if inputs.leave is None else inputs.leave
    at_work, at_work_so_far = inputs.attendance()
    counted = inputs.workday & ~quiet
    # Days away before each day in full; the day itself is never away when the rule fires
    # (it fires on a day present), so the runs need no "so far" version.
    absent = ~at_work & counted[None, :]
    runs = absence_runs(absent, counted, w)
    value, mean, std, usable = rw.context[key[0]]
    quiet_workdays = quiet & inputs.workday
    # As the active_days feature reads them: the earlier days in full, the day itself so far.
    away_quiet = ~at_work & quiet_workdays[None, :]
    quiet_away = (rolling_sum(away_quiet.astype(np.float64), w) - away_quiet
                  + (~at_work_so_far & quiet_workdays[None, :]))
    # A holiday without events says nothing about the person: it counts at their own rate of
    # presence over the other (counted) workdays of the window, not as a day at work. Counted
    # as a day at work, a tenant-wide holiday inside a short drop (away on 3 of the 4 other
    # workdays) lifted the 7-day count by one whole day, above the warning threshold: two of
    # the drops missed on fresh generated tenants.
    here = (at_work & counted[None, :]).astype(np.float64)
    here_so_far = (at_work_so_far & counted[None, :]).astype(np.float64)
    n_here = rolling_sum(here, w) - here + here_so_far
    n_counted = rolling_sum(counted.astype(np.float64), w)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_counted > 0, n_here / np.maximum(n_counted, 1.0), 1.0)
    adjusted = value + quiet_away * rate
    warn, critical = config.thresholds(FEATURE_BY_NAME[key[0]].dimension)
    min_std = float(config.baseline_algorithm["min_std"])
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (adjusted - mean) / np.maximum(np.nan_to_num(std), min_std)
        severity = np.where(z <= -critical, -2, np.where(z <= -warn, -1, 0)).astype(np.int8)
    # Clean but for quiet days: no leave and no incomplete day in the window.
    no_leave = rolling_sum(leave.astype(np.float64), w) == 0
    clean = no_leave if rw.drop_ok_intensive is None else no_leave & rw.drop_ok_intensive
    # Judged on every workday, the days away included (SPEC §5.5: a workday without events is
    # evidence for this rule): a drop shows on its days away, and waiting for the next day
    # with events cost the generated drops 2-5 days and missed the short ones (the person back
    # before the count of days away shows it). On the real celery history it fired once more
    # than that (a maintainer's days off around an unrecorded public holiday).
    # Worked days off must not hide workdays away: each day off worked (a weekend day, or a
    # holiday with events) lifts ``active_days`` 7d by a whole day, so a short drop with its
    # weekend worked never looked anomalous (4 of the 12 engagement drops the unseen
    # generated tenants missed: away on 3 of 5 workdays, active_days 7d at 3 against 4.6 +- 1
    # with a Sunday worked). With days off worked in the 7 days, the workdays at work in the
    # last 5 against the person's usual share (``workday_presence``) also count, while the
    # active days and the events of the 7 days are below their baselines (more than one std)
    # as well. Without that qualifier, and without the weekly spread floor, the real celery
    # history got 1-2 WARN drops more on a maintainer's ordinary weeks of 1-2 workdays of
    # commits (WARN-or-higher 15-18 for a target of 14); without the days off worked, 5 more
    # (active_days 7d at z -2.4 on every one of them, the workday count at -2.8).
    if inputs.usual_share is not None and inputs.usual_known is not None:
        share, known = inputs.usual_share, inputs.usual_known
    else:
        share, known = usual_workday_share(at_work, counted, leave)
    spans = (workday_presence(absent, counted, share, known, 5, min_std, std),)
    wp5 = spans[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        sev_wd = np.where(wp5.z <= -critical, -2, np.where(wp5.z <= -warn, -1, 0)).astype(np.int8)
        fewer_days = usable & (adjusted < mean - np.nan_to_num(std))
    events = rw.context.get("event_count")
    fewer_events = np.zeros((n_s, n_l), dtype=bool)
    if events is not None:
        ev, ev_mean, ev_std, ev_usable = events
        with np.errstate(invalid="ignore"):
            fewer_events = ev_usable & (ev < ev_mean - np.nan_to_num(ev_std))
    off = (at_work & ~inputs.workday[None, :]).astype(np.float64)
    off_worked = rolling_sum(off, w) - off + (at_work_so_far & ~inputs.workday[None, :])
    old_low = usable & (severity < 0)
    low = old_low | (wp5.usable & (sev_wd < 0) & (off_worked > 0) & fewer_days & fewer_events)
    fired = (low & clean & (runs >= DROP_ABSENCE_RUNS)
             & ((away_in_span(absent, counted, DROP_SPAN_WORKDAYS) >= DROP_MIN_AWAY)
                | (away_in_span(absent, counted, 5) >= DROP_WEEK_AWAY))
             & inputs.workday[None, :] & (at_work_so_far | absent))
    by_workdays = fired & ~old_low
    severity = np.where(by_workdays, sev_wd, severity).astype(np.int8)
    return Scattered(fired, severity, adjusted, runs, spans, by_workdays, wp5.z, off_worked)
