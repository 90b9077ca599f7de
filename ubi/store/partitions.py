"""Daily partitions of the ``events`` table (PostgreSQL; a no-op on the embedded SQLite store).

Partitions are created on demand by ingestion for the days of a batch that fall inside the
partition horizon, and ahead of time by the maintenance queue. Days older than the horizon
(imported history) land in the default partition, so a backfill of years never creates
thousands of tables; the horizon only moves forward, so such a day never needs its own
partition later. Retention drops whole partitions where every tenant's data of a day expired.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.models.session import is_postgres

#: Days back from today that get their own partition; older days use the default partition.
PARTITION_HORIZON_DAYS = 800

_known: set[date] = set()
_known_lock = threading.Lock()


def _today() -> date:
    return clock.today()


def existing_partitions(session: Session) -> set[date]:
    rows: sa.ScalarResult[str] = session.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = 'events' AND c.relname ~ '^events_p[0-9]{8}$'")).scalars()
    return {datetime.strptime(name[8:], "%Y%m%d").replace(tzinfo=UTC).date() for name in rows}


def ensure_partitions(session: Session, days: Iterable[date], *, today: date | None = None) -> int:
    """Make sure each day inside the horizon has its partition; returns how many were created.

    Runs its DDL on a separate connection that commits at once, so the caller's transaction
    never holds the partition lock.
    """
    if not is_postgres(session):
        return 0
    today = today or _today()
    horizon = today - timedelta(days=PARTITION_HORIZON_DAYS)
    wanted = {d for d in days if d >= horizon}
    with _known_lock:
        missing = sorted(wanted - _known)
    if not missing:
        return 0
    engine = cast(sa.Engine, session.get_bind())  # sessions here are bound to an engine
    created = 0
    with engine.connect() as conn:
        for start, end in _runs(missing):
            try:
                created += _ensure(conn, start, end)
            except sa.exc.IntegrityError:
                # The default partition holds rows of a day in the run: a day whose partition
                # retention dropped got a late event meanwhile (``drop_empty_partitions``).
                # Such a day stays in the default partition; the others get theirs.
                conn.rollback()
                for day in (start + timedelta(days=i) for i in range((end - start).days + 1)):
                    try:
                        created += _ensure(conn, day, day)
                    except sa.exc.IntegrityError:
                        conn.rollback()
    with _known_lock:
        _known.update(missing)
    return created


def _ensure(conn: sa.Connection, first: date, last: date) -> int:
    created = int(conn.execute(sa.text("SELECT ubi_ensure_event_partitions(:a, :b)"),
                               {"a": first, "b": last}).scalar_one())
    conn.commit()
    return created


def ensure_upcoming_partitions(session: Session, *, days_ahead: int = 3,
                               today: date | None = None) -> int:
    today = today or _today()
    return ensure_partitions(session, (today + timedelta(days=i) for i in range(days_ahead + 1)),
                             today=today)


def drop_partitions_before(session: Session, before: date) -> int:
    """Drop whole daily partitions older than ``before`` (every tenant's data of those days)."""
    if not is_postgres(session):
        return 0
    dropped = int(session.execute(sa.text("SELECT ubi_drop_event_partitions(:d)"),
                                  {"d": before}).scalar_one())
    with _known_lock:
        _known.difference_update({d for d in _known if d < before})
    return dropped


def partition_name(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def drop_empty_partitions(session: Session, days: Iterable[date], *,
                          lock_timeout_ms: int = 2000) -> list[date]:
    """Drop the daily partitions of ``days`` that hold no row of any tenant; returns the days
    dropped. In the caller's transaction: it locks ``events`` exclusively (so no row can
    arrive between the check and the drop) until the caller commits, so call it last. When
    the lock is not granted within ``lock_timeout_ms`` nothing is dropped (the next run
    tries again) and the caller's transaction goes on."""
    if not is_postgres(session):
        return []
    wanted = sorted(set(days) & existing_partitions(session))
    if not wanted:
        return []
    dropped: list[date] = []
    previous: str = session.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar_one()
    try:
        with session.begin_nested():
            session.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"),
                            {"v": f"{int(lock_timeout_ms)}ms"})
            session.execute(sa.text(
                "SELECT pg_advisory_xact_lock(hashtext('ubi_event_partitions'))"))
            # The parent first, as inserts take it: locking a partition first could deadlock.
            session.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            for day in wanted:
                name = partition_name(day)  # built from a date: safe to quote into the DDL
                if session.execute(sa.text(f'SELECT NOT EXISTS (SELECT 1 FROM "{name}")')
                                   ).scalar_one():
                    session.execute(sa.text(f'DROP TABLE "{name}"'))
                    dropped.append(day)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        return []  # the savepoint's rollback restored lock_timeout
    session.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"), {"v": previous})
    with _known_lock:
        _known.difference_update(dropped)
    return dropped


def forget_known_partitions() -> None:
    """Forget the cache (after a database switch, e.g. in tests)."""
    with _known_lock:
        _known.clear()


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive runs of sorted days as (first, last) pairs."""
    runs: list[tuple[date, date]] = []
    for d in days:
        if runs and d == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs
