"""Follow-up work as outbox rows, committed with the step that owes it (SPEC §9).

The one way work schedules more work: a service never sends a message itself; it records the
task it owes here, in the caller's transaction. After commit the task layer sends the rows it
wrote (``tasks.base.dispatch_followups``); the beat drain sends any a crash left behind, and
sends again a coalescing row whose message was lost (a purged queue, a broker that dropped it).
Follow-up tasks are idempotent, so a message sent twice does no harm.

Coalescing, with PostgreSQL (or SQLite) as the single source of truth: a follow-up with a
``dedupe_key`` is *pending* from its commit until a task of that key starts
(``mark_started``), and a partial unique index allows one pending row per (task, key). A
commit owing a key that is already pending writes nothing and sends nothing: the pending task
reads its work when it starts. Once it has started, the next commit owing the key writes a new
row and sends a new message. A busy step's next look is a pending row with ``not_before``
(sent with the countdown left), so any number of busy runs, and the commits that come
meanwhile, make one look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import TaskOutbox, session_factory, utcnow
from ubi.models.session import dialect_insert
from ubi.observability import tracing

#: ``session.info`` key of the follow-ups the session's transaction owes (``Owed``).
OWED_KEY = "ubi_task_outbox_owed"

#: A pending row whose message was sent this long ago and whose task has not started is sent
#: again by the drain: the message was lost (a purged queue) or sits behind a long backlog
#: (then the copy is harmless: the first to start covers the work, the other finds none).
RESEND_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class Owed:
    """A follow-up a transaction owes: the outbox row to send once it commits."""

    id: int
    task_name: str


def enqueue_followup(session: Session, task_name: str, *, tenant_id: str,
                     kwargs: dict[str, Any], dedupe_key: str | None = None,
                     correlation_id: str | None = None,
                     delay_seconds: float | None = None) -> bool:
    """Record that ``task_name(**kwargs)`` must run once this transaction commits (not before
    ``delay_seconds`` from now, when given). Returns False when a pending row of the same
    ``dedupe_key`` absorbed it (that task will read this transaction's work); if that row was
    never sent, this transaction's dispatch sends it."""
    now = utcnow()
    traceparent = tracing.current_traceparent()
    if traceparent is not None:
        # The follow-up joins this transaction's trace whoever sends it (``tasks.base``).
        kwargs = {**kwargs, tracing.TRACEPARENT_KWARG: traceparent}
    values = {"tenant_id": tenant_id, "task_name": task_name, "kwargs": kwargs,
              "dedupe_key": dedupe_key, "correlation_id": correlation_id, "created_at": now,
              "attempts": 0,
              "not_before": now + timedelta(seconds=delay_seconds) if delay_seconds else None}
    stmt = dialect_insert(session, TaskOutbox.__table__).values(**values)
    postgres = session.get_bind().dialect.name == "postgresql"
    if dedupe_key is not None:
        conflict = {"index_elements": ["task_name", "dedupe_key"],
                    "index_where": sa.and_(TaskOutbox.started_at.is_(None),
                                           TaskOutbox.dedupe_key.is_not(None))}
        if postgres:
            # Absorbed: lock the pending row until this commit, so that its task cannot start
            # (``mark_started`` waits) and read its work before this transaction's is visible.
            stmt = stmt.on_conflict_do_update(
                **conflict, set_={"attempts": TaskOutbox.__table__.c.attempts})
        else:  # the embedded store has one writer at a time
            stmt = stmt.on_conflict_do_nothing(**conflict)
    inserted = (sa.literal_column("xmax = 0") if postgres else sa.true()).label("inserted")
    row = session.execute(stmt.returning(TaskOutbox.id, TaskOutbox.dispatched_at, inserted)
                          ).one_or_none()
    if row is None:  # SQLite's DO NOTHING returns no row: read the pending one
        row = session.execute(sa.select(TaskOutbox.id, TaskOutbox.dispatched_at,
                                        sa.false().label("inserted")).where(
            TaskOutbox.task_name == task_name, TaskOutbox.dedupe_key == dedupe_key,
            TaskOutbox.started_at.is_(None))).one_or_none()
    owed = session.info.setdefault(OWED_KEY, [])
    if row is not None and (row.inserted or row.dispatched_at is None):
        # A pending row whose send failed after its commit (a broker or database blip) is
        # sent by this commit's dispatch, not left to the drain.
        owed.append(Owed(row.id, task_name))
    return row is not None and bool(row.inserted)


def mark_started(task_name: str, dedupe_key: str) -> None:
    """A coalescing task calls this before it reads its work, in a transaction of its own:
    what commits from now on owes a run of its own."""
    with session_factory()() as session:
        session.execute(sa.update(TaskOutbox).where(
            TaskOutbox.task_name == task_name, TaskOutbox.dedupe_key == dedupe_key,
            TaskOutbox.started_at.is_(None)).values(started_at=utcnow()))
        session.commit()


def claim_pending(session: Session, *, ids: list[int] | None = None,
                  older_than: timedelta | None = None, limit: int = 500) -> list[TaskOutbox]:
    """Rows to send, locked for this transaction where the store can lock: the given rows (a
    commit's own), or, for the drain, rows never sent and older than ``older_than`` plus
    pending rows sent more than ``RESEND_AFTER`` ago whose task has not started."""
    now = utcnow()
    stmt = sa.select(TaskOutbox)
    if ids is not None:
        stmt = stmt.where(TaskOutbox.id.in_(ids), TaskOutbox.dispatched_at.is_(None))
    else:
        unsent: sa.ColumnElement[bool] = TaskOutbox.dispatched_at.is_(None)
        if older_than is not None:
            unsent = sa.and_(unsent, TaskOutbox.created_at <= now - older_than)
        lost = sa.and_(TaskOutbox.dedupe_key.is_not(None), TaskOutbox.started_at.is_(None),
                       TaskOutbox.dispatched_at <= now - RESEND_AFTER,
                       sa.or_(TaskOutbox.not_before.is_(None),
                              TaskOutbox.not_before <= now - RESEND_AFTER))
        stmt = stmt.where(sa.or_(unsent, lost))
    stmt = stmt.order_by(TaskOutbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.execute(stmt).scalars())


def countdown(row: TaskOutbox, now: datetime | None = None) -> int | None:
    """Whole seconds until the row's ``not_before``, rounded up (RabbitMQ's native delayed
    delivery counts in seconds); None when due."""
    if row.not_before is None:
        return None
    left = (row.not_before - (now or utcnow())).total_seconds()
    return math.ceil(left) if left > 0 else None


def mark_dispatched(row: TaskOutbox, at: datetime | None = None) -> None:
    row.dispatched_at = at or utcnow()
    row.attempts += 1


def mark_failed(row: TaskOutbox, error: str) -> None:
    row.attempts += 1
    row.last_error = error[:2000]
