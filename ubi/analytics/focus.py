"""Focus sessions from event sequences (SPEC §5.1, ``focus_session_avg_minutes``).

Ingestion keeps, per actor and UTC day, the total minutes and the number of focus sessions
(``DailyActivity.focus_minutes`` / ``focus_sessions``). This module turns the few sequence events
that feed them (``focus_session_started``, ``focus_session_ended``, ``context_switch``) into
those two numbers. The result never depends on the order the events arrived in: each actor's
events are sorted by a total key before they are read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any, NamedTuple

from ubi.analytics.events import BehaviouralEvent
from ubi.analytics.taxonomy import SEQUENCE_EVENT_TYPES

#: Longest gap between two context switches that still counts as one focus session (SPEC §5.1).
CONTEXT_SWITCH_GAP_CAP_S: float = 4 * 3600.0

_SECONDS_PER_DAY = 86400

# At one instant an ``ended`` is read before a ``started``: a session that ends when the next one
# starts must close before the next one opens. Context switches never pair, so their rank is moot.
_TYPE_RANK = {"focus_session_ended": 0, "focus_session_started": 1, "context_switch": 2}


class SequenceEvent(NamedTuple):
    """One event of a flow sequence: UTC epoch seconds, canonical type, optional duration (ms).

    A named tuple, not a dataclass: ingestion builds thousands per batch, four times faster."""

    actor_id: str
    epoch_s: float
    event_type: str
    duration_ms: float | None = None


def _utc_day(epoch_s: float) -> int:
    return int(epoch_s // _SECONDS_PER_DAY)


def _sort_key(e: SequenceEvent) -> tuple[float, int, float]:
    # A total order on everything that matters, so shuffled input gives the same pairing.
    return (e.epoch_s, _TYPE_RANK.get(e.event_type, 3),
            -1.0 if e.duration_ms is None else float(e.duration_ms))


def focus_by_day(events: Iterable[SequenceEvent]) -> dict[tuple[str, int], tuple[float, int]]:
    """Focus time per (actor_id, UTC day number): ``(total minutes, number of sessions)``.

    Sessions: a ``focus_session_started`` pairs with the next ``focus_session_ended`` of the same
    actor in time order; its length is the time between the two. A second ``started`` while one
    is open replaces the open one (the first was never closed, and inventing an end for it would
    invent focus). An ``ended`` with no open start counts with its ``duration_ms`` if it has one,
    else it is ignored. A session belongs to the UTC day on which it ended.

    Fallback: on an actor-day with no focus session at all, each gap between consecutive
    ``context_switch`` events of that actor on that day is one session, capped at 4 h. Two
    switches at the same instant make no gap (a duplicate is not a zero-minute session).

    Actor-days with neither sessions nor gaps are absent from the result.
    """
    by_actor: dict[str, list[SequenceEvent]] = defaultdict(list)
    for e in events:
        if e.event_type in _TYPE_RANK:
            by_actor[e.actor_id].append(e)

    out: dict[tuple[str, int], tuple[float, int]] = {}
    for actor, seq in by_actor.items():
        seq.sort(key=_sort_key)
        sessions: dict[int, list[float]] = defaultdict(list)  # day -> [minutes, sessions]
        switches: dict[int, list[float]] = defaultdict(list)
        open_start: float | None = None
        for e in seq:
            if e.event_type == "focus_session_started":
                open_start = e.epoch_s
            elif e.event_type == "focus_session_ended":
                if open_start is not None:
                    minutes = (e.epoch_s - open_start) / 60.0
                    open_start = None
                elif e.duration_ms is not None and e.duration_ms >= 0:
                    minutes = float(e.duration_ms) / 60000.0
                else:
                    continue
                acc = sessions.setdefault(_utc_day(e.epoch_s), [0.0, 0])
                acc[0] += minutes
                acc[1] += 1
            else:
                switches[_utc_day(e.epoch_s)].append(e.epoch_s)
        for day, (minutes, count) in sessions.items():
            out[(actor, day)] = (minutes, int(count))
        for day, times in switches.items():
            if (actor, day) in out:
                continue
            gaps = [min(b - a, CONTEXT_SWITCH_GAP_CAP_S)
                    for a, b in pairwise(times) if b > a]
            if gaps:
                out[(actor, day)] = (sum(gaps) / 60.0, len(gaps))
    return out


def duration_ms(properties: Mapping[str, Any]) -> float | None:
    """An event's ``duration_ms`` property when it is a number >= 0, else None."""
    value = properties.get("duration_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def focus_of_events(events: Iterable[BehaviouralEvent]) -> dict[tuple[str, int],
                                                                   tuple[float, int]]:
    """``focus_by_day`` over the sequence events among ``events``."""
    return focus_by_day(SequenceEvent(e.actor_id, float(e.epoch_s), e.event_type,
                                      duration_ms(e.properties))
                        for e in events if e.event_type in SEQUENCE_EVENT_TYPES)
