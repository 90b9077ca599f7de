"""What the store holds undone, for the metrics page (SPEC §11): pending events per tenant,
each outbox's undelivered rows and each tenant's open ingestion gap, read when the page is
scraped."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from ubi import clock
from ubi.models import IngestionState, ReceiptOutbox, SignalOutbox, TaskOutbox
from ubi.observability.metrics import Backlog
from ubi.services.batches import pending_by_tenant

#: Per outbox (``ubi_outbox_*{outbox}``): its table's creation time and the condition of an
#: undelivered row, which its pending index serves (``ix_task_outbox_pending`` on
#: ``dispatched_at``; ``ix_*_outbox_pending`` on ``status``), so each is one index range.
_UNDELIVERED: dict[str, tuple[InstrumentedAttribute[datetime], sa.ColumnElement[bool]]] = {
    # A follow-up is delivered once sent to the broker (a lost message is sent again by the
    # drain; whether its task started is the queues' business, not the outbox's).
    "task": (TaskOutbox.created_at, TaskOutbox.dispatched_at.is_(None)),
    "signal": (SignalOutbox.created_at, SignalOutbox.status == "pending"),
    # Dead receipts are given up on (``ubi_receipt_emission_total{status="dead"}``).
    "receipt": (ReceiptOutbox.created_at, ReceiptOutbox.status == "pending"),
}


def outbox_backlog(session: Session, now: datetime | None = None
                   ) -> dict[str, tuple[int, float]]:
    """Per outbox: undelivered rows and the age in seconds of the oldest (0 when none); one
    query each."""
    now = now or clock.utcnow()
    out: dict[str, tuple[int, float]] = {}
    for name, (created_at, undelivered) in _UNDELIVERED.items():
        row = session.execute(
            sa.select(sa.func.count(), sa.func.min(created_at)).where(undelivered)).one()
        oldest: datetime | None = row[1]
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        out[name] = (int(row[0]), age)
    return out


def ingestion_gaps(session: Session, now: datetime | None = None) -> dict[str, float]:
    """Per tenant: seconds its ingestion gap has been open (``track_staleness`` opens and
    closes gaps, SPEC §9), 0 when none; one query."""
    now = now or clock.utcnow()
    return {tenant_id: max(0.0, (now - since).total_seconds()) if since is not None else 0.0
            for tenant_id, since in session.execute(sa.select(
                IngestionState.tenant_id, IngestionState.gap_open_since)).all()}


def read_backlog(session: Session) -> Backlog:
    return Backlog(pending_events=pending_by_tenant(session), outboxes=outbox_backlog(session),
                   gaps=ingestion_gaps(session))
