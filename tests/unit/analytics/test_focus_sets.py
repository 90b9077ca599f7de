"""The set-based focus computation (``focus.focus_of_days``) against the one-event-at-a-time
loop it replaced (kept here as the reference), whole sequences and per-day windows."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ubi.analytics.focus import (
    CONTEXT_SWITCH_GAP_CAP_S,
    SequenceEvent,
    focus_by_day,
    focus_of_days,
)

T0 = 19723 * 86400.0
_RANK = {"focus_session_ended": 0, "focus_session_started": 1, "context_switch": 2}


def _sort_key(e: SequenceEvent) -> tuple[float, int, float]:
    return (e.epoch_s, _RANK.get(e.event_type, 3),
            -1.0 if e.duration_ms is None else float(e.duration_ms))


def reference(events: list[SequenceEvent]) -> dict[tuple[str, int], tuple[float, int]]:
    """The loop ``focus_by_day`` was until 2026-12-07."""
    ranks = {"focus_session_ended", "focus_session_started", "context_switch"}
    by_actor: dict[str, list[SequenceEvent]] = defaultdict(list)
    for e in events:
        if e.event_type in ranks:
            by_actor[e.actor_id].append(e)
    out: dict[tuple[str, int], tuple[float, int]] = {}
    for actor, seq in by_actor.items():
        seq.sort(key=_sort_key)
        sessions: dict[int, list[float]] = {}
        switches: dict[int, list[float]] = defaultdict(list)
        open_start: float | None = None
        for e in seq:
            day = int(e.epoch_s // 86400)
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
                acc = sessions.setdefault(day, [0.0, 0])
                acc[0] += minutes
                acc[1] += 1
            else:
                switches[day].append(e.epoch_s)
        for day, (minutes, count) in sessions.items():
            out[(actor, day)] = (minutes, int(count))
        for day, times in switches.items():
            if (actor, day) in out:
                continue
            gaps = [min(b - a, CONTEXT_SWITCH_GAP_CAP_S) for a, b in pairwise(times) if b > a]
            if gaps:
                out[(actor, day)] = (sum(gaps) / 60.0, len(gaps))
    return out


_event = st.builds(
    SequenceEvent, st.sampled_from(["a", "b", "c"]),
    st.one_of(st.integers(0, 4 * 86400), st.floats(0, 4 * 86400)).map(lambda s: T0 + s),
    st.sampled_from(["focus_session_started", "focus_session_ended", "context_switch",
                     "file_edited"]),
    st.one_of(st.none(), st.integers(0, 7200000).map(float), st.floats(0, 1e7)))


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=60))
def test_whole_sequences_as_the_loop(events: list[SequenceEvent]) -> None:
    assert focus_by_day(events) == reference(events)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=60), st.lists(st.tuples(
    st.sampled_from(["a", "b", "c", "z"]), st.integers(19722, 19728)), max_size=12))
def test_each_day_from_itself_and_the_day_before_as_the_loop(
        events: list[SequenceEvent], asked: list[tuple[str, int]]) -> None:
    # The features step's refresh: a day's focus from its events and the day before's.
    asked = sorted(set(asked))
    minutes, sessions = focus_of_days(
        [e.actor_id for e in events], np.array([e.epoch_s for e in events]),
        [e.event_type for e in events],
        np.array([np.nan if e.duration_ms is None else e.duration_ms for e in events]),
        asked, lookback_days=1)
    for (actor, day), m, n in zip(asked, minutes.tolist(), sessions.tolist(), strict=True):
        window = [e for e in events if e.actor_id == actor
                  and day - 1 <= int(e.epoch_s // 86400) <= day]
        assert (m, n) == reference(window).get((actor, day), (0.0, 0))
