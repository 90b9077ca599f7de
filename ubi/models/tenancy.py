"""Per-tenant state: versioned config, batches, ingestion freshness, day flags, dirty work."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.models.base import Base, JSONType, UTCDateTime


class TenantConfigVersion(Base):
    """One version of a tenant's config (SPEC §10). ``kind='suggestion'`` rows are proposals
    (e.g. a raised threshold from feedback) that an admin can accept; they are never applied."""

    __tablename__ = "tenant_configs"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="applied")
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    diff: Mapped[list[Any]] = mapped_column(JSONType)
    author: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    snapshot_hash: Mapped[str] = mapped_column(sa.String(80))
    receipt_id: Mapped[str | None] = mapped_column(sa.String(36))
    reason: Mapped[str | None] = mapped_column(sa.Text)


class Batch(Base):
    """An accepted batch of envelopes and what became of it (SPEC §6 ``GET /batches``)."""

    __tablename__ = "batches"
    __table_args__ = (sa.Index("ix_batches_tenant_created", "tenant_id", "created_at"),
                      sa.Index("ix_batches_tenant_status", "tenant_id", "status"),
                      # GET /batches/{id} of a privileged caller names no tenant.
                      sa.Index("ix_batches_batch_id", "batch_id"))

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    batch_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # queued|processing|done|failed
    submitted_by: Mapped[str | None] = mapped_column(sa.String(256))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected: Mapped[int] = mapped_column(sa.Integer, default=0)
    duplicates: Mapped[int] = mapped_column(sa.Integer, default=0)
    inserted: Mapped[int] = mapped_column(sa.Integer, default=0)
    stored_duplicates: Mapped[int] = mapped_column(sa.Integer, default=0)
    counted_only: Mapped[int] = mapped_column(sa.Integer, default=0)
    dropped: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IngestionState(Base):
    """Freshness per tenant (SPEC §9)."""

    __tablename__ = "ingestion_state"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    newest_ingested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    newest_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the batch that brought ``newest_event_at`` was received (how current the stream is).
    newest_event_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_baseline_recompute_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_day_closed: Mapped[date | None] = mapped_column(sa.Date)
    #: First and last UTC day whose anomalies, scores and signals were evaluated (the last is
    #: detection's watermark); every feature row of the days between exists.
    first_evaluated_day: Mapped[date | None] = mapped_column(sa.Date)
    last_evaluated_day: Mapped[date | None] = mapped_column(sa.Date)
    gap_open_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    events_total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    pending_events: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TenantDay(Base):
    """A UTC day of a tenant flagged as not to be read as normal activity (SPEC §9)."""

    __tablename__ = "tenant_days"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    #: ``gap`` (ingestion gap: incomplete), ``quiet`` (most actors absent), ``holiday``.
    reason: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class FeatureRefresh(Base):
    """A day of a tenant whose stored features a later step owes a recompute (SPEC §9):

    - ``groups``: an event arrived for a closed day after detection read it; detection
      recomputes the team, cohort and tenant features of the days from it on (the features
      step keeps the actor features);
    - ``all``: an event arrived older than ``late_event_days``; the full recompute (nightly,
      ``ubi recompute``) recomputes every feature of the days from it on.

    ``token`` changes with every mark, so a step releases only the marks it read.
    """

    __tablename__ = "feature_refresh"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    token: Mapped[str] = mapped_column(sa.String(36))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DirtySubject(Base):
    """An (actor, day) whose features must be recomputed; claimed by the features step."""

    __tablename__ = "dirty_subjects"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    batch_id: Mapped[str | None] = mapped_column(sa.String(36))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: 1 when a sequence event (focus, context switch) marked the pair since it was last
    #: released: only then may its focus, and the next day's, have changed. Rows written
    #: without it count as marked (the server default), so nothing is ever skipped wrongly.
    focus: Mapped[int] = mapped_column(sa.SmallInteger, server_default=sa.text("1"))
