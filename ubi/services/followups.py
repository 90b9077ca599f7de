"""Follow-up work as outbox rows, committed with the step that owes it (SPEC §9).

A service never sends a message itself: it records the task it owes here, in the caller's
transaction. After commit the task layer dispatches the rows it wrote; a beat drain sends any
that a crash left behind. Follow-up tasks are idempotent, so a row sent twice does no harm.

Follow-ups with a ``dedupe_key`` coalesce: a row still waiting absorbs later ones, and after
commit no message is sent while a task with that key is queued and has not started yet (the
task layer's ``needs_message``): that task reads its work after this commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import TaskOutbox, utcnow

#: ``session.info`` key of the follow-ups the session's transaction owes (``Owed``).
OWED_KEY = "ubi_task_outbox_owed"


@dataclass(frozen=True)
class Owed:
    """A follow-up a transaction recorded: its outbox row and what the message would be."""

    id: int
    task_name: str
    dedupe_key: str | None
    kwargs: dict[str, Any]


def enqueue_followup(session: Session, task_name: str, *, tenant_id: str,
                     kwargs: dict[str, Any], dedupe_key: str | None = None,
                     correlation_id: str | None = None) -> None:
    """Record that ``task_name(**kwargs)`` must run once this transaction commits.

    With ``dedupe_key``, a row that is still waiting for dispatch with the same key absorbs
    this one (the pending task will see the new work too).
    """
    owed = session.info.setdefault(OWED_KEY, [])
    if dedupe_key is not None:
        pending = session.execute(
            sa.select(TaskOutbox.id).where(TaskOutbox.task_name == task_name,
                                           TaskOutbox.dedupe_key == dedupe_key,
                                           TaskOutbox.dispatched_at.is_(None)).limit(1)
        ).scalar_one_or_none()
        if pending is not None:
            owed.append(Owed(pending, task_name, dedupe_key, kwargs))
            return
    row = TaskOutbox(tenant_id=tenant_id, task_name=task_name, kwargs=kwargs,
                     dedupe_key=dedupe_key, correlation_id=correlation_id, created_at=utcnow(),
                     attempts=0)
    session.add(row)
    session.flush()
    owed.append(Owed(row.id, task_name, dedupe_key, kwargs))


def claim_pending(session: Session, *, ids: list[int] | None = None,
                  older_than: timedelta | None = None, limit: int = 500) -> list[TaskOutbox]:
    """Rows waiting for dispatch, locked for this transaction where the store can lock."""
    stmt = sa.select(TaskOutbox).where(TaskOutbox.dispatched_at.is_(None))
    if ids is not None:
        stmt = stmt.where(TaskOutbox.id.in_(ids))
    if older_than is not None:
        stmt = stmt.where(TaskOutbox.created_at <= utcnow() - older_than)
    stmt = stmt.order_by(TaskOutbox.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.execute(stmt).scalars())


def mark_dispatched(row: TaskOutbox, at: datetime | None = None) -> None:
    row.dispatched_at = at or utcnow()
    row.attempts += 1


def mark_failed(row: TaskOutbox, error: str) -> None:
    row.attempts += 1
    row.last_error = error[:2000]
