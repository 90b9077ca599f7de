"""Daily rollups of events (SPEC §5.1): what ingestion adds for the events it inserted.

Vectorised with numpy: a batch of N events becomes a handful of array operations, grouped by
(actor, UTC day). The same function builds a ``DailyActivity`` straight from events for tests,
the demo's ground truth and replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity, Interactions, WorkItems
from ubi.analytics.calendar import EPOCH_DAY, classify_times, day_from_number, day_number
from ubi.analytics.events import BehaviouralEvent
from ubi.analytics.taxonomy import (
    COLLABORATION_EVENT_TYPES,
    EVENT_TYPE_INDEX,
    ROLLUP_COUNTER_COLUMNS,
)
from ubi.analytics.tenant_config import TenantConfig

N_COUNTERS = len(ROLLUP_COUNTER_COLUMNS)
_TYPE_OFFSET = COUNTER_INDEX["n_" + next(iter(EVENT_TYPE_INDEX))]
_LLM_SUBMITTED = EVENT_TYPE_INDEX["llm_request_submitted"]


@dataclass
class RollupDelta:
    """What a set of events adds to the rollups, one row per (actor, day)."""

    actor_ids: list[str]
    days: list[date]
    actor_types: list[str]
    team_ids: list[str | None]
    counters: np.ndarray  # int64 [G, N_COUNTERS], columns of ROLLUP_COUNTER_COLUMNS
    hours_mask: np.ndarray  # int64 [G]
    local_days: np.ndarray  # int64 [G] activity.LOCAL_* bits
    first_epoch: np.ndarray  # int64 [G]
    last_epoch: np.ndarray  # int64 [G]
    #: (actor, day, counterpart pseudonym) -> events
    interactions: dict[tuple[str, date, str], int]
    #: (actor, day, work item) -> (events, llm_request_submitted events)
    work_items: dict[tuple[str, date, str], tuple[int, int]]

    def __len__(self) -> int:
        return len(self.actor_ids)

    def columns(self) -> dict[str, object]:
        """The same as ``rows``, by column: numbers stay numpy arrays."""
        out: dict[str, object] = {
            "actor_id": self.actor_ids, "day": self.days, "actor_type": self.actor_types,
            "team_id": self.team_ids, "hours_mask": self.hours_mask,
            "local_days": self.local_days,
            "first_event_at": [datetime.fromtimestamp(t, tz=UTC)
                               for t in self.first_epoch.tolist()],
            "last_event_at": [datetime.fromtimestamp(t, tz=UTC)
                              for t in self.last_epoch.tolist()],
        }
        for j, name in enumerate(ROLLUP_COUNTER_COLUMNS):
            out[name] = self.counters[:, j]
        return out

    def rows(self) -> list[dict[str, object]]:
        """Plain rows for an upsert into ``daily_rollups`` (without ``tenant_id``)."""
        out = []
        for g in range(len(self)):
            row: dict[str, object] = {
                "actor_id": self.actor_ids[g], "day": self.days[g],
                "actor_type": self.actor_types[g], "team_id": self.team_ids[g],
                "hours_mask": int(self.hours_mask[g]), "local_days": int(self.local_days[g]),
                "first_event_at": datetime.fromtimestamp(int(self.first_epoch[g]), tz=UTC),
                "last_event_at": datetime.fromtimestamp(int(self.last_epoch[g]), tz=UTC),
            }
            row.update(zip(ROLLUP_COUNTER_COLUMNS, self.counters[g].tolist(), strict=True))
            out.append(row)
        return out


def rollup_events(events: Sequence[BehaviouralEvent], config: TenantConfig) -> RollupDelta:
    """Group events by (actor, UTC day) and count them (one tenant's events)."""
    n = len(events)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return RollupDelta([], [], [], [], np.zeros((0, N_COUNTERS), dtype=np.int64), z, z, z,
                           z, {}, {})
    epoch = np.fromiter((e.epoch_s for e in events), dtype=np.int64, count=n)
    offsets = np.fromiter((e.utc_offset_minutes for e in events), dtype=np.int64, count=n)
    types = np.fromiter((EVENT_TYPE_INDEX[e.event_type] for e in events), dtype=np.int64,
                        count=n)
    actor_codes: dict[str, int] = {}
    actors = np.fromiter((actor_codes.setdefault(e.actor_id, len(actor_codes)) for e in events),
                         dtype=np.int64, count=n)
    days = np.floor_divide(epoch, 86400)
    hours = np.floor_divide(epoch - days * 86400, 3600)
    after, late, local_day = classify_times(epoch, offsets, config)

    group_key = actors * 1_000_000 + (days - days.min())
    keys, group = np.unique(group_key, return_inverse=True)
    g_count = len(keys)
    counters = np.zeros((g_count, N_COUNTERS), dtype=np.int64)
    np.add.at(counters[:, COUNTER_INDEX["event_count"]], group, 1)
    np.add.at(counters[:, COUNTER_INDEX["after_hours"]], group, after.astype(np.int64))
    np.add.at(counters[:, COUNTER_INDEX["late_night"]], group, late.astype(np.int64))
    flat = counters.reshape(-1)
    np.add.at(flat, group * N_COUNTERS + _TYPE_OFFSET + types, 1)
    hours_mask = np.zeros(g_count, dtype=np.int64)
    np.bitwise_or.at(hours_mask, group, np.left_shift(np.int64(1), hours))
    # local_day - day is -1, 0 or +1: bits LOCAL_PREVIOUS, LOCAL_SAME, LOCAL_NEXT.
    local_days = np.zeros(g_count, dtype=np.int64)
    np.bitwise_or.at(local_days, group,
                     np.left_shift(np.int64(1), np.clip(local_day - days + 1, 0, 2)))
    first = np.full(g_count, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(g_count, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, group, epoch)
    np.maximum.at(last, group, epoch)

    # Actor type / team of a group: those of its latest event (an actor may move teams).
    order = np.lexsort((epoch, group))
    last_of_group = order[np.r_[np.nonzero(np.diff(group[order]))[0], len(order) - 1]]
    actor_by_code = list(actor_codes)
    g_actor = [actor_by_code[int(actors[i])] for i in last_of_group]
    g_day = [EPOCH_DAY + timedelta(days=int(days[i])) for i in last_of_group]
    g_type = [events[int(i)].actor_type for i in last_of_group]
    g_team = [events[int(i)].team_id for i in last_of_group]

    interactions: dict[tuple[str, date, str], int] = {}
    work_items: dict[tuple[str, date, str], tuple[int, int]] = {}
    for i, e in enumerate(events):
        counterpart = e.counterpart_id if e.event_type in COLLABORATION_EVENT_TYPES else None
        item = e.work_item_id
        if counterpart is None and item is None:
            continue
        day = EPOCH_DAY + timedelta(days=int(days[i]))
        if counterpart is not None and counterpart != e.actor_id:
            key = (e.actor_id, day, counterpart)
            interactions[key] = interactions.get(key, 0) + 1
        if item is not None:
            wkey = (e.actor_id, day, item)
            ev, llm = work_items.get(wkey, (0, 0))
            work_items[wkey] = (ev + 1, llm + (1 if types[i] == _LLM_SUBMITTED else 0))

    return RollupDelta(g_actor, g_day, g_type, g_team, counters, hours_mask, local_days, first,
                       last, interactions, work_items)


def build_daily_activity(events: Sequence[BehaviouralEvent], config: TenantConfig, *,
                         start_day: date | None = None, end_day: date | None = None,
                         focus: dict[tuple[str, int], tuple[float, int]] | None = None
                         ) -> DailyActivity:
    """A ``DailyActivity`` over [start_day, end_day] straight from events (one tenant).

    ``focus`` maps (actor, day number) to (minutes, sessions), as ``focus.focus_by_day``
    returns it; without it focus time is zero.
    """
    delta = rollup_events(events, config)
    if start_day is None:
        start_day = min(delta.days) if len(delta) else EPOCH_DAY
    if end_day is None:
        end_day = max(delta.days) if len(delta) else start_day
    n_days = (end_day - start_day).days + 1
    subjects = sorted(set(delta.actor_ids))
    index = {a: i for i, a in enumerate(subjects)}
    s = len(subjects)
    counters = np.zeros((s, n_days, N_COUNTERS))
    hours_mask = np.zeros((s, n_days), dtype=np.int64)
    local_days = np.zeros((s, n_days), dtype=np.int64)
    actor_type = {a: "human" for a in subjects}
    team: dict[str, str | None] = {a: None for a in subjects}
    latest: dict[str, date] = {}
    for g in range(len(delta)):
        actor, day = delta.actor_ids[g], delta.days[g]
        d = (day - start_day).days
        if 0 <= d < n_days:
            counters[index[actor], d] += delta.counters[g]
            hours_mask[index[actor], d] |= int(delta.hours_mask[g])
            local_days[index[actor], d] |= int(delta.local_days[g])
        if actor not in latest or day >= latest[actor]:
            latest[actor] = day
            actor_type[actor] = delta.actor_types[g]
            team[actor] = delta.team_ids[g]
    focus_minutes = np.zeros((s, n_days))
    focus_sessions = np.zeros((s, n_days))
    start_n = day_number(start_day)
    for (actor, dnum), (minutes, sessions) in (focus or {}).items():
        d = dnum - start_n
        if actor in index and 0 <= d < n_days:
            focus_minutes[index[actor], d] += minutes
            focus_sessions[index[actor], d] += sessions
    counterpart_codes: dict[str, int] = {}
    inter_rows = [(index[a], (day - start_day).days, counterpart_codes.setdefault(c, len(
        counterpart_codes)), n, team.get(a) is not None and team.get(c) is not None
        and team.get(a) != team.get(c))
        for (a, day, c), n in delta.interactions.items()
        if a in index and 0 <= (day - start_day).days < n_days]
    item_codes: dict[str, int] = {}
    item_rows = [(index[a], (day - start_day).days, item_codes.setdefault(w, len(item_codes)),
                  llm)
                 for (a, day, w), (_ev, llm) in delta.work_items.items()
                 if a in index and 0 <= (day - start_day).days < n_days]
    interactions = Interactions(
        np.array([r[0] for r in inter_rows], dtype=np.int64),
        np.array([r[1] for r in inter_rows], dtype=np.int64),
        np.array([r[2] for r in inter_rows], dtype=np.int64),
        np.array([r[3] for r in inter_rows], dtype=np.float64),
        np.array([r[4] for r in inter_rows], dtype=bool))
    work_items = WorkItems(
        np.array([r[0] for r in item_rows], dtype=np.int64),
        np.array([r[1] for r in item_rows], dtype=np.int64),
        np.array([r[2] for r in item_rows], dtype=np.int64),
        np.array([r[3] for r in item_rows], dtype=np.float64))
    return DailyActivity(subjects, [actor_type[a] for a in subjects],
                         [team[a] for a in subjects], start_day, counters, hours_mask,
                         focus_minutes, focus_sessions, interactions, work_items,
                         local_days=local_days)


__all__ = ["RollupDelta", "build_daily_activity", "day_from_number", "rollup_events"]
