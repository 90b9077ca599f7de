"""Focus time in the daily rollups (SPEC §5.1), kept current by ingestion.

A focus session may start in one batch and end in another, so a day's focus minutes cannot be
added up like counters: they are recomputed from the stored sequence events. The focus of an
(actor, day) is read from that actor's sequence events of the day and the day before (a session
counts on the day it ends; one that started the day before pairs across midnight), so the
result depends only on what is stored, never on how events were split into batches.

On PostgreSQL this is two statements per batch whatever its size: one read of just the
sequence events of the needed (actor, day) pairs (epoch seconds, type and numeric duration,
no documents), and one array ``UPDATE`` of the rollups.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.calendar import day_number
from ubi.analytics.focus import SequenceEvent, focus_by_day
from ubi.analytics.taxonomy import SEQUENCE_EVENT_TYPES
from ubi.models import Event, daily_rollups
from ubi.models.session import is_postgres

_SEQUENCE_TYPES = sorted(SEQUENCE_EVENT_TYPES)

# Per pair, a lateral index lookup on the partial index of sequence events (migration 0004);
# the types are literals so that even a prepared (generic) plan can use that index, and
# OFFSET 0 keeps the planner from turning the lookups into a scan of the tenant's days.
# The duration is taken only when the JSON value is a number >= 0 (as ``_duration_ms``).
_READ_PG = (
    "SELECT p.a, p.d, extract(epoch FROM e.timestamp_utc)::float8, e.event_type, "
    "CASE WHEN jsonb_typeof(e.properties -> 'duration_ms') = 'number' "
    "THEN CASE WHEN (e.properties ->> 'duration_ms')::float8 >= 0 "
    "THEN (e.properties ->> 'duration_ms')::float8 END END "
    "FROM unnest(%(a)b::varchar[], %(d)b::date[]) AS p(a, d) "
    "CROSS JOIN LATERAL (SELECT timestamp_utc, event_type, properties FROM events "
    "WHERE tenant_id = %(t)s AND actor_id = p.a AND event_date = p.d AND event_type IN ("
    + ", ".join(f"'{t}'" for t in _SEQUENCE_TYPES) + ") OFFSET 0) AS e")

_UPDATE_PG = (
    "UPDATE daily_rollups AS r SET focus_minutes = u.m, focus_sessions = u.s "
    "FROM unnest(%(a)b::varchar[], %(d)b::date[], %(m)b::float8[], %(s)b::int[]) "
    "AS u(a, d, m, s) WHERE r.tenant_id = %(t)s AND r.actor_id = u.a AND r.day = u.d "
    "AND (r.focus_minutes IS DISTINCT FROM u.m OR r.focus_sessions IS DISTINCT FROM u.s)")


def affected_days(touched: set[tuple[str, date]]) -> set[tuple[str, date]]:
    """The (actor, day) pairs whose focus new sequence events on ``touched`` may change: the
    day itself and the day after (a session started today may end tomorrow)."""
    return touched | {(a, d + timedelta(days=1)) for a, d in touched}


def refresh_focus(session: Session, tenant_id: str, pairs: set[tuple[str, date]]) -> int:
    """Recompute the focus minutes and sessions of ``pairs`` from their stored sequence events
    (pairs without a rollup row are skipped: a day without events has no focus time)."""
    if not pairs:
        return 0
    reads = pairs | {(a, d - timedelta(days=1)) for a, d in pairs}
    by_pair = _sequence_events(session, tenant_id, reads)
    ordered = sorted(pairs)
    minutes: list[float] = []
    sessions: list[int] = []
    for actor, day in ordered:
        seq = by_pair.get((actor, day - timedelta(days=1)), []) + by_pair.get((actor, day), [])
        m, n = focus_by_day(seq).get((actor, day_number(day)), (0.0, 0)) if seq else (0.0, 0)
        minutes.append(float(m))
        sessions.append(int(n))
    if is_postgres(session):
        session.connection().exec_driver_sql(_UPDATE_PG, {
            "t": tenant_id, "a": [a for a, _ in ordered], "d": [d for _, d in ordered],
            "m": minutes, "s": sessions})
        return len(ordered)
    stmt = sa.update(daily_rollups).where(
        daily_rollups.c.tenant_id == tenant_id, daily_rollups.c.actor_id == sa.bindparam("a"),
        daily_rollups.c.day == sa.bindparam("d")).values(
        focus_minutes=sa.bindparam("m"), focus_sessions=sa.bindparam("s"))
    session.connection().execute(stmt, [
        {"a": a, "d": d, "m": m, "s": n}
        for (a, d), m, n in zip(ordered, minutes, sessions, strict=True)])
    return len(ordered)


def _sequence_events(session: Session, tenant_id: str, pairs: set[tuple[str, date]]
                     ) -> dict[tuple[str, date], list[SequenceEvent]]:
    """The stored sequence events of each (actor, day) of ``pairs``."""
    ordered = sorted(pairs)
    out: dict[tuple[str, date], list[SequenceEvent]] = defaultdict(list)
    if is_postgres(session):
        rows = session.connection().exec_driver_sql(_READ_PG, {
            "t": tenant_id, "a": [a for a, _ in ordered], "d": [d for _, d in ordered]}).all()
        for actor, day, epoch_s, event_type, duration in rows:
            out[(actor, day)].append(SequenceEvent(actor, epoch_s, event_type, duration))
        return out
    wanted = set(ordered)
    lo, hi = min(d for _, d in ordered), max(d for _, d in ordered)
    rows = session.execute(sa.select(
        Event.actor_id, Event.event_date, Event.timestamp_utc, Event.event_type,
        Event.properties).where(
        Event.tenant_id == tenant_id, Event.event_date >= lo, Event.event_date <= hi,
        Event.actor_id.in_(sorted({a for a, _ in ordered})),
        Event.event_type.in_(_SEQUENCE_TYPES)))
    for actor, day, ts, event_type, props in rows:
        if (actor, day) in wanted:
            out[(actor, day)].append(SequenceEvent(actor, ts.timestamp(), event_type,
                                                   _duration_ms(props)))
    return out


def _duration_ms(props: Any) -> float | None:
    value = props.get("duration_ms") if isinstance(props, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        and value >= 0 else None
