"""Follow-up work as outbox rows, committed with the step that owes it (SPEC §9).

A service never sends a message itself: it records the task it owes here, in the caller's
transaction. After commit the task layer dispatches the rows it wrote; a beat drain sends any
that a crash left behind. Follow-up tasks are idempotent, so a row sent twice does no harm.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import TaskOutbox, utcnow

OUTBOX_IDS_KEY = "ubi_task_outbox_ids"


def enqueue_followup(session: Session, task_name: str, *, tenant_id: str,
                     kwargs: dict[str, Any], dedupe_key: str | None = None,
                     correlation_id: str | None = None) -> None:
    """Record that ``task_name(**kwargs)`` must run once this transaction commits.

    With ``dedupe_key``, a row that is still waiting for dispatch with the same key absorbs
    this one (the pending task will see the new work too).
    """
    if dedupe_key is not None:
        pending = session.execute(
            sa.select(TaskOutbox.id).where(TaskOutbox.task_name == task_name,
                                           TaskOutbox.dedupe_key == dedupe_key,
                                           TaskOutbox.dispatched_at.is_(None)).limit(1)
        ).scalar_one_or_none()
        if pending is not None:
            session.info.setdefault(OUTBOX_IDS_KEY, []).append(pending)
            return
    row = TaskOutbox(tenant_id=tenant_id, task_name=task_name, kwargs=kwargs,
                     dedupe_key=dedupe_key, correlation_id=correlation_id, created_at=utcnow(),
                     attempts=0)
    session.add(row)
    session.flush()
    session.info.setdefault(OUTBOX_IDS_KEY, []).append(row.id)


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
