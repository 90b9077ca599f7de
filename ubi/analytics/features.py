"""Features per subject, window and UTC day from daily rollups (SPEC §5.1).

The value of a feature on day ``d`` for window ``w`` is computed over the ``w`` UTC days ending
with ``d`` inclusive (24h = that day, 7d = days d-6..d). Everything is vectorised over all
subjects and days: window sums come from cumulative sums along the day axis, and counts of
distinct counterparts / work items in a window from interval arithmetic on a difference array.

NaN means "null / not applicable": a rate whose denominator is zero, a ratio without events,
``active_days`` on the 24h window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from ubi.analytics.activity import DailyActivity
from ubi.analytics.taxonomy import FEATURE_INDEX, FEATURE_NAMES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

N_FEATURES = len(FEATURE_NAMES)

#: The rollup counters ``compute_features`` reads: all the features step loads of them.
FEATURE_COUNTERS: tuple[str, ...] = (
    "event_count", "n_commit_created", "n_build_failed", "n_build_succeeded", "n_test_failed",
    "n_test_passed", "n_llm_request_submitted", "n_llm_request_failed", "n_pr_merged",
    "n_pr_reviewed", "n_context_switch", "after_hours", "late_night", "n_override_attempted",
    "n_policy_violation")


@dataclass
class FeatureCube:
    """Feature values of S subjects over D days for one window.

    ``values``: float64 [S, D, F] in ``FEATURE_NAMES`` order, NaN = null / not applicable.
    ``confidence``: float64 [S, D], share of the window's days with complete ingestion (days
    before ``start_day`` are not loaded and count as not complete).
    """

    subject_ids: list[str]
    start_day: date
    window: str
    values: np.ndarray
    confidence: np.ndarray
    #: The sample sizes behind rate features, [S, D] each, for their sampling-noise floor
    #: (``anomalies.noise_floor``): ``events``, ``builds``, ``tests``, ``llm_submitted``,
    #: ``commits`` (max(1, commits)), ``active_hours``, ``work_items``.
    denominators: dict[str, np.ndarray] = field(default_factory=dict)

    def feature(self, name: str) -> np.ndarray:
        """[S, D] values of one feature."""
        return self.values[:, :, FEATURE_INDEX[name]]

    @property
    def n_days(self) -> int:
        return int(self.values.shape[1])


def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum over the last ``w`` entries (inclusive) along the last axis; truncated at the start."""
    cs = np.cumsum(x, axis=-1, dtype=np.float64)
    if w < cs.shape[-1]:
        cs[..., w:] -= cs[..., :-w].copy()
    return cs


@dataclass
class Occurrences:
    """De-duplicated (subject, code, day) occurrences sorted by subject, code, day, with the day
    of the same (subject, code)'s next occurrence (a large number if none). Independent of the
    window, so one preparation serves every window."""

    subject: np.ndarray
    day: np.ndarray
    next_day: np.ndarray
    n_subjects: int
    n_days: int


_NEVER = np.iinfo(np.int64).max // 4


def prepare_occurrences(subject: np.ndarray, day: np.ndarray, code: np.ndarray,
                        n_subjects: int, n_days: int) -> Occurrences:
    """Sort and de-duplicate occurrences for ``distinct_in_window`` (entries outside the
    subjects / days range are dropped)."""
    subject = np.asarray(subject, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    code = np.asarray(code, dtype=np.int64)
    inside = (day >= 0) & (day < n_days) & (subject >= 0) & (subject < n_subjects)
    subject, day, code = subject[inside], day[inside], code[inside]
    if subject.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return Occurrences(z, z, z, n_subjects, n_days)
    code_min = int(code.min())
    n_codes = int(code.max()) - code_min + 1
    if n_subjects * n_codes * (n_days + 1) < 2**62:
        # One int64 key per (subject, code, day): a single sort is much faster than lexsort.
        key = np.sort((subject * n_codes + (code - code_min)) * n_days + day)
        key = key[np.r_[True, key[1:] != key[:-1]]]
        d = key % n_days
        sc = key // n_days
        s, c = sc // n_codes, sc % n_codes
    else:
        order = np.lexsort((day, code, subject))
        s, c, d = subject[order], code[order], day[order]
        keep = np.ones(s.size, dtype=bool)
        keep[1:] = (s[1:] != s[:-1]) | (c[1:] != c[:-1]) | (d[1:] != d[:-1])
        s, c, d = s[keep], c[keep], d[keep]
    nxt = np.full(s.size, _NEVER, dtype=np.int64)
    same_pair_next = (s[1:] == s[:-1]) & (c[1:] == c[:-1])
    nxt[:-1] = np.where(same_pair_next, d[1:], nxt[:-1])
    return Occurrences(s, d, nxt, n_subjects, n_days)


def distinct_counts(occ: Occurrences, w: int) -> np.ndarray:
    """[S, D] number of distinct codes per subject within the ``w``-day window ending on each
    day.

    Each (subject, code) occurrence on day ``d`` covers the windows ending on days
    ``[d, min(next occurrence, d + w))``; the truncation at the next occurrence makes the
    intervals of one (subject, code) disjoint, so summing them counts every code once. The
    +1 / -1 interval ends go into a difference array (bincount), a cumulative sum does the rest.
    """
    n_s, n_d = occ.n_subjects, occ.n_days
    if occ.subject.size == 0:
        return np.zeros((n_s, n_d))
    end = np.minimum(np.minimum(occ.next_day, occ.day + w), n_d)
    width = n_d + 1
    size = n_s * width
    diff = (np.bincount(occ.subject * width + occ.day, minlength=size)
            - np.bincount(occ.subject * width + end, minlength=size))
    return np.cumsum(diff.reshape(n_s, width), axis=1)[:, :n_d].astype(np.float64)


def distinct_in_window(subject: np.ndarray, day: np.ndarray, code: np.ndarray,
                       n_subjects: int, n_days: int, w: int) -> np.ndarray:
    """[S, D] number of distinct codes per subject within the window ending on each day."""
    return distinct_counts(prepare_occurrences(subject, day, code, n_subjects, n_days), w)


@dataclass
class PreparedActivity:
    """Window-independent preparations of one ``DailyActivity`` (reuse across windows)."""

    counterparts: Occurrences
    work_items: Occurrences
    active_hours: np.ndarray


def prepare_activity(activity: DailyActivity) -> PreparedActivity:
    """Sort interactions / work items and count active hours once for all windows."""
    n_s, n_d = activity.n_subjects, activity.n_days
    inter, items = activity.interactions, activity.work_items
    return PreparedActivity(
        prepare_occurrences(inter.subject, inter.day, inter.counterpart, n_s, n_d),
        prepare_occurrences(items.subject, items.day, items.item, n_s, n_d),
        activity.active_hours().astype(np.float64))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def window_confidence(n_subjects: int, n_days: int, w: int,
                      incomplete_days: np.ndarray | None) -> np.ndarray:
    """[S, D] share of the window's ``w`` days that are loaded and not incomplete."""
    complete = np.ones((n_subjects, n_days))
    if incomplete_days is not None:
        inc = np.asarray(incomplete_days, dtype=bool)
        complete = complete * ~np.broadcast_to(inc, (n_subjects, n_days))
    return rolling_sum(complete, w) / float(w)


def compute_features(activity: DailyActivity, window: str, config: TenantConfig,
                     incomplete_days: np.ndarray | None = None,
                     prepared: PreparedActivity | None = None,
                     timings: dict[str, float] | None = None,
                     from_index: int = 0) -> FeatureCube:
    """Every SPEC §5.1 feature of every subject for ``window`` on every loaded day from the
    ``from_index``-th on (the days before only feed the windows; the cube starts there).

    ``incomplete_days``: bool [D] (tenant-wide) or [S, D]; only feeds ``confidence`` — the values
    are what was received. Working hours were applied when the rollups were built (ingestion
    classifies each event with the tenant's config), so ``config`` is only consulted for the
    window list. ``prepared``: ``prepare_activity(activity)``, to share sorting across windows.

    ``timings``: seconds spent on each feature are added to it (features are computed together,
    so each gets the time of the statements since the previous feature was stored: an input
    several share counts to the first that uses it; the inputs read up front, the
    denominators and the confidence are not counted to any).
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}")
    if window not in config.windows:
        raise ValueError(f"window {window!r} is not enabled for this tenant")
    w = WINDOWS[window]
    n_s, n_d = activity.n_subjects, activity.n_days
    if not 0 <= from_index <= n_d:
        raise ValueError(f"from_index {from_index} is outside the {n_d} loaded days")
    k = from_index
    prep = prepared or prepare_activity(activity)
    values = np.full((n_s, n_d - k, N_FEATURES), np.nan)

    # The first day a window ending on day k or later reaches: sums are taken from there (the
    # loaded range serves the longest window; a 24h run of one dirty day needs one day).
    first = max(0, k - w + 1)

    def window_sum(x: np.ndarray, fractional: bool = False) -> np.ndarray:
        # Kept from day k on: every value below is elementwise on these sums, so it is the
        # same as computed on every day and sliced. Counts sum exactly from any start; a
        # fractional input's running sum rounds differently from another start, so it keeps
        # the loaded range's (the values equal those of a run from day 0, bit for bit).
        if fractional:
            return rolling_sum(x, w)[:, k:]
        return rolling_sum(x[:, first:], w)[:, k - first:]

    def roll(name: str) -> np.ndarray:
        if name not in FEATURE_COUNTERS:  # a loader given FEATURE_COUNTERS did not read it
            raise KeyError(f"{name} is not in FEATURE_COUNTERS")
        return window_sum(activity.counter(name))

    mark = 0.0

    def put(name: str, arr: np.ndarray) -> None:
        nonlocal mark
        values[:, :, FEATURE_INDEX[name]] = arr
        if timings is not None:
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - mark
            mark = now

    events = roll("event_count")
    commits = roll("n_commit_created")
    build_failed, build_ok = roll("n_build_failed"), roll("n_build_succeeded")
    test_failed, test_ok = roll("n_test_failed"), roll("n_test_passed")
    llm_submitted = roll("n_llm_request_submitted")

    mark = time.perf_counter()  # the shared inputs above are nobody's
    put("event_count", events)
    put("commit_count", commits)
    if w > 1:  # active_days is not defined on the 24h window
        # Local days (``DailyActivity.presence``), as known when each day closed: the days
        # before it in full, the day itself so far.
        present, so_far = activity.presence()
        put("active_days", window_sum(present.astype(float))
            - present[:, k:] + so_far[:, k:].astype(float))
    put("build_failure_rate", _ratio(build_failed, build_failed + build_ok))
    put("test_failure_rate", _ratio(test_failed, test_failed + test_ok))
    put("pr_throughput", roll("n_pr_merged"))
    put("rework_ratio", (build_failed + test_failed) / np.maximum(1.0, commits))
    put("context_switch_rate",
        _ratio(roll("n_context_switch"), window_sum(prep.active_hours)))
    put("focus_session_avg_minutes",
        _ratio(window_sum(activity.focus_minutes, fractional=True),
               window_sum(activity.focus_sessions)))
    hours_events = events if activity.after_hours_events is None else \
        window_sum(activity.after_hours_events)
    put("after_hours_ratio", _ratio(roll("after_hours"), hours_events))
    put("late_night_events", roll("late_night"))
    put("reviews_given", roll("n_pr_reviewed"))

    inter = activity.interactions
    put("distinct_collaborators", distinct_counts(prep.counterparts, w)[:, k:])
    cross_daily: np.ndarray = np.zeros(n_s * n_d)
    if inter.subject.size:
        ok = (inter.day >= 0) & (inter.day < n_d)
        idx = inter.subject[ok] * n_d + inter.day[ok]
        cross_daily = np.bincount(idx, weights=inter.count[ok] * inter.cross_team[ok],
                                  minlength=n_s * n_d)
    put("cross_team_interactions", window_sum(cross_daily.reshape(n_s, n_d)))

    put("llm_requests", llm_submitted)
    put("llm_failure_rate", roll("n_llm_request_failed") / np.maximum(1.0, llm_submitted))
    items = distinct_counts(prep.work_items, w)[:, k:]
    put("llm_requests_per_work_item", _ratio(llm_submitted, items))
    put("override_count", roll("n_override_attempted") + roll("n_policy_violation"))

    denominators = {
        "events": events, "after_hours_events": hours_events,
        "builds": build_failed + build_ok, "tests": test_failed + test_ok,
        "llm_submitted": np.maximum(1.0, llm_submitted), "commits": np.maximum(1.0, commits),
        "active_hours": window_sum(prep.active_hours), "work_items": items}
    return FeatureCube(list(activity.subject_ids), activity.start_day + timedelta(days=k),
                       window, values, window_confidence(
                           n_s, n_d - first, w, None if incomplete_days is None
                           else np.asarray(incomplete_days)[..., first:])[:, k - first:],
                       denominators)
