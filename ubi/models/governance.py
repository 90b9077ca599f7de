"""Audit log, deletion jobs and retention decisions (SPEC §8)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.models.base import Base, JSONType, UTCDateTime


class AuditEntry(Base):
    """Something a person or the system did that must be accountable. Key names, counts and
    ids only: never property values, never raw actor ids."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_tenant_time", "tenant_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(sa.String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(sa.String(64))
    principal: Mapped[str | None] = mapped_column(sa.String(256))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    batch_id: Mapped[str | None] = mapped_column(sa.String(36))


class DeletionJob(Base):
    """A privacy deletion request and its progress (SPEC §6 ``/privacy/deletions``)."""

    __tablename__ = "deletion_jobs"

    job_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    actor_id: Mapped[str | None] = mapped_column(sa.String(64))  # pseudonym, never raw
    time_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    time_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))  # queued|running|done|failed
    requested_by: Mapped[str] = mapped_column(sa.String(256))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RetentionDecision(Base):
    """Data Governance's last answer for a tenant's month of data (kept for outages)."""

    __tablename__ = "retention_decisions"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)  # first day of the month
    action: Mapped[str] = mapped_column(sa.String(16))  # none|retain|delete
    policy_id: Mapped[str | None] = mapped_column(sa.String(128))
    legal_hold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    source: Mapped[str] = mapped_column(sa.String(16))  # governance|fallback
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
