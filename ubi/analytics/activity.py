"""The compact per-subject per-day representation the analytics read (SPEC §5.1).

Ingestion keeps one daily rollup row per (tenant, actor, UTC day) with a counter per canonical
event type plus a few day-level counts, a bitmask of the UTC hours with activity, a bitmask
of the local days its events fell on (the actor's own calendar, for presence), and the focus
time of the day; collaboration and work-item sets are kept in narrow side tables. The storage
layer loads those rows into a ``DailyActivity`` for one tenant over a range of consecutive days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS

COUNTER_INDEX: dict[str, int] = {c: i for i, c in enumerate(ROLLUP_COUNTER_COLUMNS)}

#: ``local_days`` bits of a rollup row of UTC day D: some event fell on local day D - 1, D or
#: D + 1 (in the event's own offset, or the tenant's timezone). A UTC offset is within
#: ±14 h, so an event's local day is never further than one day from its UTC day.
LOCAL_PREVIOUS, LOCAL_SAME, LOCAL_NEXT = 1, 2, 4


@dataclass
class Interactions:
    """One entry per (subject, day, counterpart): collaboration events naming a counterpart.

    ``counterpart`` holds integer codes (distinct per counterpart pseudonym within the tenant);
    ``cross_team`` is True where the counterpart's team is known and differs from the subject's.
    """

    subject: np.ndarray  # int64 [K] subject index
    day: np.ndarray  # int64 [K] day index (0 = DailyActivity.start_day)
    counterpart: np.ndarray  # int64 [K]
    count: np.ndarray  # float64 [K] number of events
    cross_team: np.ndarray  # bool [K]

    @classmethod
    def empty(cls) -> Interactions:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), z.copy(), np.zeros(0), np.zeros(0, dtype=bool))


@dataclass
class WorkItems:
    """One entry per (subject, day, work item) the subject's events named."""

    subject: np.ndarray  # int64 [K]
    day: np.ndarray  # int64 [K]
    item: np.ndarray  # int64 [K] work item code
    llm_requests: np.ndarray  # float64 [K] llm_request_submitted events naming the item

    @classmethod
    def empty(cls) -> WorkItems:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), z.copy(), np.zeros(0))


@dataclass
class DailyActivity:
    """Rollups of S subjects over D consecutive UTC days starting at ``start_day``."""

    subject_ids: list[str]
    actor_types: list[str]
    team_ids: list[str | None]
    start_day: date
    #: float64 [S, D, len(ROLLUP_COUNTER_COLUMNS)], columns as in ``ROLLUP_COUNTER_COLUMNS``.
    counters: np.ndarray
    #: int64 [S, D] bitmask of UTC hours (bit h = hour h) with at least one event.
    hours_mask: np.ndarray
    #: float64 [S, D] total minutes of focus sessions that ended that day.
    focus_minutes: np.ndarray
    #: float64 [S, D] number of focus sessions that ended that day.
    focus_sessions: np.ndarray
    interactions: Interactions = field(default_factory=Interactions.empty)
    work_items: WorkItems = field(default_factory=WorkItems.empty)
    #: float64 [S, D] the events the ``after_hours`` and ``late_night`` counters are taken
    #: from: a group's human members' events (SPEC §5.5: team and tenant after-hours
    #: aggregates count humans only). None = every event (``event_count``; an actor).
    after_hours_events: np.ndarray | None = None
    #: int64 [S, D] ``LOCAL_*`` bits per row (see above). None: every event on its UTC day.
    local_days: np.ndarray | None = None

    @property
    def n_subjects(self) -> int:
        return len(self.subject_ids)

    @property
    def n_days(self) -> int:
        return int(self.counters.shape[1])

    def counter(self, name: str) -> np.ndarray:
        """[S, D] view of one counter column."""
        return self.counters[:, :, COUNTER_INDEX[name]]

    def presence(self) -> tuple[np.ndarray, np.ndarray]:
        """bool [S, D] twice: (present, present_so_far). ``present[s, d]``: the subject had an
        event on its own local day d; ``present_so_far[s, d]``: one of those was known when UTC
        day d closed (rows up to d only). A person in UTC-8 works on two UTC days every day,
        so a day off shows only in local days; and the evening of such a day arrives with UTC
        day d + 1, so what is judged at day d's close reads ``present_so_far`` for day d and
        ``present`` for the days before it (both are functions of the rows up to d)."""
        if self.local_days is None:
            active = self.counter("event_count") > 0
            return active, active
        bits = self.local_days
        so_far = (bits & LOCAL_SAME) > 0
        so_far[:, 1:] |= (bits[:, :-1] & LOCAL_NEXT) > 0
        present = so_far.copy()
        present[:, :-1] |= (bits[:, 1:] & LOCAL_PREVIOUS) > 0
        return present, so_far

    def active_hours(self) -> np.ndarray:
        """[S, D] number of distinct UTC hours with at least one event."""
        m = self.hours_mask.astype(np.uint64)
        count = np.zeros(m.shape, dtype=np.int64)
        for bit in range(24):
            count += ((m >> np.uint64(bit)) & np.uint64(1)).astype(np.int64)
        return count

    @classmethod
    def empty(cls, start_day: date, n_days: int) -> DailyActivity:
        return cls([], [], [], start_day,
                   np.zeros((0, n_days, len(ROLLUP_COUNTER_COLUMNS))),
                   np.zeros((0, n_days), dtype=np.int64), np.zeros((0, n_days)),
                   np.zeros((0, n_days)), local_days=np.zeros((0, n_days), dtype=np.int64))
