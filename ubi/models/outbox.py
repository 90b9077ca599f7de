"""Outboxes: work and messages committed with the rows that owe them (SPEC §9, §12, §13).

A step writes its rows and the messages it owes in one transaction; a drain sends them after
commit and marks them sent only once the broker (or ERIS) confirmed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.models.base import Base, JSONType, UTCDateTime

#: A row of a coalescing follow-up is pending from its commit until its task starts.
_PENDING = "started_at IS NULL AND dedupe_key IS NOT NULL"


class TaskOutbox(Base):
    """A follow-up Celery task owed by a committed step (e.g. features after an ingest).

    ``services.followups``: the single source of truth for "at most one pending run per step
    and tenant" is the partial unique index below (one row per key not started yet)."""

    __tablename__ = "task_outbox"
    __table_args__ = (
        sa.Index("ix_task_outbox_pending", "dispatched_at", "id"),
        sa.Index("uq_task_outbox_pending_key", "task_name", "dedupe_key", unique=True,
                 postgresql_where=sa.text(_PENDING), sqlite_where=sa.text(_PENDING)),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    task_name: Mapped[str] = mapped_column(sa.String(128))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Rows with the same key coalesce: one pending task per (task, key).
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(256))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Not to run before (a busy step's next look): sent with the countdown left.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When a task of this key started: from then on its work is read, and a new commit owing
    #: the same key needs a row (and a message) of its own.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class SignalOutbox(Base):
    """A signal version to publish on the stream (SPEC §12)."""

    __tablename__ = "signal_outbox"
    __table_args__ = (
        # Leads with the tenant like every per-tenant key (Citus); ``id`` orders a tenant's
        # versions on the stream (SQLite's are numbered by ``ubi.store.outbox``).
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_signal_outbox"),
        sa.UniqueConstraint("tenant_id", "signal_id", "version", name="uq_signal_outbox_version"),
        sa.Index("ix_signal_outbox_pending", "status", "next_attempt_at"),
        # The drain claims each tenant's oldest pending rows (``services.stream``).
        sa.Index("ix_signal_outbox_tenant_pending", "tenant_id", "id",
                 postgresql_where=sa.text("status = 'pending'"),
                 sqlite_where=sa.text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    autoincrement=True)
    signal_id: Mapped[str] = mapped_column(sa.String(36))
    version: Mapped[int] = mapped_column(sa.Integer)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    routing_key: Mapped[str] = mapped_column(sa.String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")  # pending|published
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReceiptOutbox(Base):
    """A signed evidence receipt to deliver to ERIS (SPEC §13)."""

    __tablename__ = "receipt_outbox"
    __table_args__ = (sa.Index("ix_receipt_outbox_pending", "status", "next_attempt_at"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    receipt_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    resource_type: Mapped[str] = mapped_column(sa.String(16))  # config|signal
    resource_id: Mapped[str | None] = mapped_column(sa.String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
