"""Focus time (SPEC §5.1) in ``daily_focus``, recomputed from the stored sequence events.

A focus session may start in one batch and end in another, so a day's focus minutes cannot be
added up like counters: they are recomputed from the stored sequence events. The focus of an
(actor, day) is read from that actor's sequence events of the day and the day before (a session
counts on the day it ends; one that started the day before pairs across midnight), so the
result depends only on what is stored, never on how events were split into batches.

Who recomputes: the features step, once per run, for the (actor, day) pairs it computes that a
sequence event marked (``dirty_subjects.focus``; other events cannot change focus) and the day
after each, before it reads the activity (``services/features``); detection and the nightly
recompute for the marked pairs still waiting for it, before they read whole days; ingestion
only for days older than the tenant's late-event window, which no features run will compute.
Recomputing it per batch instead read every stored sequence event of the batch's actor-days
each time: at full load as much work as storing the batch, redone by the next batch before
anything read it.

On PostgreSQL this is two statements whatever the number of pairs: one read of just the
sequence events of the needed (actor, day) pairs (epoch seconds, type and numeric duration,
no documents), and one statement that upserts the pairs with focus and deletes the others.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.calendar import day_number
from ubi.analytics.focus import duration_ms, focus_of_days
from ubi.analytics.taxonomy import SEQUENCE_EVENT_TYPES
from ubi.models import DirtySubject, Event, daily_focus, utcnow
from ubi.models.session import is_postgres
from ubi.store import bulk

_SEQUENCE_TYPES = sorted(SEQUENCE_EVENT_TYPES)

# Per pair, a lateral index lookup on the partial index of sequence events (migration 0004);
# the types are literals so that even a prepared (generic) plan can use that index, and
# OFFSET 0 keeps the planner from turning the lookups into a scan of the tenant's days. The
# days' array prunes the daily partitions once, when the statement starts: pruning only by
# each pair's day would rescan every partition's node for every pair (with 320 partitions,
# storing 5,000-event batches took 12x longer).
# The duration is taken only when the JSON value is a number >= 0 (as ``focus.duration_ms``).
_READ_PG = (
    "SELECT p.a, p.d, extract(epoch FROM e.timestamp_utc)::float8, e.event_type, "
    "CASE WHEN jsonb_typeof(e.properties -> 'duration_ms') = 'number' "
    "THEN CASE WHEN (e.properties ->> 'duration_ms')::float8 >= 0 "
    "THEN (e.properties ->> 'duration_ms')::float8 END END "
    "FROM unnest(%(a)b::varchar[], %(d)b::date[]) AS p(a, d) "
    "CROSS JOIN LATERAL (SELECT timestamp_utc, event_type, properties FROM events "
    "WHERE tenant_id = %(t)s AND actor_id = p.a AND event_date = p.d "
    "AND event_date = ANY(%(days)b::date[]) AND event_type IN ("
    + ", ".join(f"'{t}'" for t in _SEQUENCE_TYPES) + ") OFFSET 0) AS e")

# Upsert the pairs with focus, delete those without (a row only where there is focus). Rows
# whose values did not change are left out before the upsert, not by its WHERE: ON CONFLICT
# locks every conflicting row until commit, and detection and the nightly recompute refresh
# pairs the features step usually computed already, in transactions that last long.
_WRITE_PG = (
    "WITH c(a, d, m, s) AS (SELECT * FROM unnest(%(a)b::varchar[], %(d)b::date[], "
    "%(m)b::float8[], %(s)b::int[])), "
    "gone AS (DELETE FROM daily_focus f USING c WHERE f.tenant_id = %(t)s AND f.actor_id = c.a "
    "AND f.day = c.d AND c.s = 0 AND c.m = 0) "
    "INSERT INTO daily_focus AS f (tenant_id, actor_id, day, focus_minutes, focus_sessions, "
    "updated_at) SELECT %(t)s, a, d, m, s, %(now)s FROM c WHERE (s <> 0 OR m <> 0) "
    "AND NOT EXISTS (SELECT 1 FROM daily_focus o WHERE o.tenant_id = %(t)s AND o.actor_id = c.a "
    "AND o.day = c.d AND o.focus_minutes = c.m AND o.focus_sessions = c.s) "
    "ON CONFLICT (tenant_id, actor_id, day) DO UPDATE SET focus_minutes = "
    "excluded.focus_minutes, focus_sessions = excluded.focus_sessions, updated_at = "
    "excluded.updated_at")


def affected_days(touched: set[tuple[str, date]]) -> set[tuple[str, date]]:
    """The (actor, day) pairs whose focus new sequence events on ``touched`` may change: the
    day itself and the day after (a session started today may end tomorrow)."""
    return touched | {(a, d + timedelta(days=1)) for a, d in touched}


def refresh_focus(session: Session, tenant_id: str, pairs: set[tuple[str, date]]) -> int:
    """Recompute the focus minutes and sessions of ``pairs`` from their stored sequence events
    and store them in ``daily_focus`` (a pair without focus has no row). Returns the number of
    pairs with focus."""
    if not pairs:
        return 0
    reads = pairs | {(a, d - timedelta(days=1)) for a, d in pairs}
    ordered = sorted(pairs)
    # Each pair's focus from its own day's and the day before's events (what was read).
    found, sessions_of = focus_of_days(*_sequence_events(session, tenant_id, reads),
                                       [(a, day_number(d)) for a, d in ordered],
                                       lookback_days=1)
    minutes: list[float] = found.tolist()
    sessions: list[int] = sessions_of.tolist()
    now = utcnow()
    if is_postgres(session):
        session.connection().exec_driver_sql(_WRITE_PG, {
            "t": tenant_id, "a": [a for a, _ in ordered], "d": [d for _, d in ordered],
            "m": minutes, "s": sessions, "now": now})
        return sum(1 for n in sessions if n)
    f = daily_focus.c
    for part in bulk.chunks(ordered, 400):  # (actor, day) IN (...): two parameters a pair
        session.execute(sa.delete(daily_focus).where(
            f.tenant_id == tenant_id, sa.tuple_(f.actor_id, f.day).in_(list(part))))
    rows = [{"tenant_id": tenant_id, "actor_id": a, "day": d, "focus_minutes": m,
             "focus_sessions": n, "updated_at": now}
            for (a, d), m, n in zip(ordered, minutes, sessions, strict=True) if n or m]
    if rows:
        session.execute(sa.insert(daily_focus), rows)
    return len(rows)


def refresh_pending(session: Session, tenant_id: str, through: date | None = None) -> int:
    """Refresh the focus of the tenant's dirty pairs (up to ``through``) and the day after
    each, for a step that reads whole days without waiting for the features step (detection,
    the nightly recompute): their counters are already in the rollups, their focus would not
    be (only pairs a sequence event marked). The pairs stay dirty: the features step still
    owes their features."""
    query = sa.select(DirtySubject.actor_id, DirtySubject.day).where(
        DirtySubject.tenant_id == tenant_id, DirtySubject.focus != 0)
    if through is not None:
        query = query.where(DirtySubject.day <= through)
    pairs: set[tuple[str, date]] = {(a, d) for a, d in session.execute(query)}
    return refresh_focus(session, tenant_id, affected_days(pairs))


def _sequence_events(session: Session, tenant_id: str, pairs: set[tuple[str, date]]
                     ) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """The stored sequence events of the (actor, day) ``pairs`` as columns (``focus_of_days``'
    first four): actors, epoch seconds, types, ``duration_ms`` (NaN: none)."""
    ordered = sorted(pairs)
    if is_postgres(session):
        # psycopg's own tuples: SQLAlchemy's rows cost more than the pairing (thousands a run).
        raw = session.connection().connection.driver_connection
        assert raw is not None  # the session's live connection always has its driver connection
        with raw.cursor() as cur:
            cur.execute(_READ_PG, _read_params(tenant_id, ordered))
            rows: list[tuple[str, date, float, str, float | None]] = cur.fetchall()
        columns = [(a, e, t, d) for a, _, e, t, d in rows]
    else:
        wanted = set(ordered)
        lo, hi = min(d for _, d in ordered), max(d for _, d in ordered)
        # typed by hand: a JSON column in the select makes SQLAlchemy infer Row[*tuple[Any, ...]]
        result: sa.Result[str, date, datetime, str, dict[str, Any]] = session.execute(sa.select(
            Event.actor_id, Event.event_date, Event.timestamp_utc, Event.event_type,
            Event.properties).where(
            Event.tenant_id == tenant_id, Event.event_date >= lo, Event.event_date <= hi,
            Event.actor_id.in_(sorted({a for a, _ in ordered})),
            Event.event_type.in_(_SEQUENCE_TYPES)))
        columns = [(actor, ts.timestamp(), event_type,
                    duration_ms(props if isinstance(props, dict) else {}))
                   for actor, day, ts, event_type, props in result if (actor, day) in wanted]
    return ([a for a, _, _, _ in columns], np.array([e for _, e, _, _ in columns], dtype=float),
            [t for _, _, t, _ in columns],
            np.array([np.nan if d is None else d for _, _, _, d in columns], dtype=float))


def _read_params(tenant_id: str, ordered: list[tuple[str, date]]) -> dict[str, Any]:
    return {"t": tenant_id, "a": [a for a, _ in ordered], "d": [d for _, d in ordered],
            "days": sorted({d for _, d in ordered})}
