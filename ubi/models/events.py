"""Stored behavioural events and the daily rollups ingestion keeps of them (SPEC §3, §5.1).

On PostgreSQL ``events`` is range-partitioned by UTC day (``event_date``), with the tenant in
the key; a partition-maintenance function creates daily partitions on demand (migration 0001).
Partitioned tables only allow unique keys that contain the partition key, so the global
idempotency key (tenant, signal_id) lives in the small unpartitioned ``event_keys`` table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS, SEQUENCE_EVENT_TYPES
from ubi.models.base import Base, JSONType, UTCDateTime

_SEQUENCES = "event_type IN (" + ", ".join(f"'{t}'" for t in sorted(SEQUENCE_EVENT_TYPES)) + ")"


class Event(Base):
    """One stored ``BehaviouralEvent`` (kind ``event`` only; minimised and pseudonymised)."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_tenant_actor_ts", "tenant_id", "actor_id", "timestamp_utc"),
        # Only the sequence events focus time is computed from (migration 0004).
        sa.Index("ix_events_sequences", "tenant_id", "actor_id", "event_date",
                 postgresql_where=sa.text(_SEQUENCES), sqlite_where=sa.text(_SEQUENCES)),
        {"postgresql_partition_by": "RANGE (event_date)"},
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    actor_id: Mapped[str] = mapped_column(sa.String(64))
    actor_type: Mapped[str] = mapped_column(sa.String(16))
    team_id: Mapped[str | None] = mapped_column(sa.String(256))
    source_system: Mapped[str | None] = mapped_column(sa.String(256))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    timestamp_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    utc_offset_minutes: Mapped[int] = mapped_column(sa.SmallInteger)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType)
    resource: Mapped[dict[str, Any]] = mapped_column(JSONType)
    privacy_tags: Mapped[list[Any]] = mapped_column(JSONType)
    schema_version: Mapped[str] = mapped_column(sa.String(32))
    trace_id: Mapped[str | None] = mapped_column(sa.String(128))
    span_id: Mapped[str | None] = mapped_column(sa.String(128))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    environment: Mapped[str | None] = mapped_column(sa.String(64))
    producer_id: Mapped[str | None] = mapped_column(sa.String(128))
    sequence_no: Mapped[int | None] = mapped_column(sa.BigInteger)
    batch_id: Mapped[str | None] = mapped_column(sa.String(36))


class EventKey(Base):
    """Idempotency ledger: every (tenant, signal_id) ever stored, whatever its day."""

    __tablename__ = "event_keys"
    __table_args__ = (sa.Index("ix_event_keys_tenant_date", "tenant_id", "event_date"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    event_date: Mapped[date] = mapped_column(sa.Date)
    actor_id: Mapped[str] = mapped_column(sa.String(64))


#: Per (tenant, actor, UTC day) counters, updated only for newly inserted events. A Core table:
#: its counter columns come from the taxonomy, and it is only ever read and written in bulk.
daily_rollups = sa.Table(
    "daily_rollups",
    Base.metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("actor_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("team_id", sa.String(256)),
    *(sa.Column(name, sa.Integer, nullable=False, server_default="0")
      for name in ROLLUP_COUNTER_COLUMNS),
    # Bit h set when UTC hour h had an event (OR-ed on upsert).
    sa.Column("hours_mask", sa.Integer, nullable=False, server_default="0"),
    # Bits 1 / 2 / 4: an event fell on local day - 1 / the same / + 1 (OR-ed on upsert;
    # ``analytics.activity.LOCAL_*``): presence on the actor's own calendar.
    sa.Column("local_days", sa.SmallInteger, nullable=False, server_default="2"),
    sa.Column("first_event_at", UTCDateTime),
    sa.Column("last_event_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_daily_rollups_tenant_day", "tenant_id", "day"),
    # A team's actors in a window (team summaries, SPEC §6): an index-only scan of the team's
    # rows instead of every actor's rows of the window (ubi bench api, docs/benchmarks.md).
    sa.Index("ix_daily_rollups_tenant_team_day", "tenant_id", "team_id", "day", "actor_id"),
)


#: Focus time per (tenant, actor, UTC day) of the sessions that ended that day (SPEC §5.1), a
#: row only where there is some. Not a counter: it is recomputed from the stored sequence
#: events (``services/focus_time``) by the features step for the pairs it computes, and by
#: ingestion only for days too old for that. Its own table, so that the features step's long
#: transaction never holds a row ingestion's rollup upserts need.
daily_focus = sa.Table(
    "daily_focus",
    Base.metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("actor_id", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("focus_minutes", sa.Float, nullable=False),
    sa.Column("focus_sessions", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_daily_focus_tenant_day", "tenant_id", "day"),
)


class DailyInteraction(Base):
    """Collaboration events per (tenant, actor, day, counterpart pseudonym)."""

    __tablename__ = "daily_interactions"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    counterpart_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    events: Mapped[int] = mapped_column(sa.Integer, default=0)


class DailyWorkItem(Base):
    """Work items an actor's events named per day, with the LLM requests made for each."""

    __tablename__ = "daily_work_items"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    work_item_id: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    events: Mapped[int] = mapped_column(sa.Integer, default=0)
    llm_requests: Mapped[int] = mapped_column(sa.Integer, default=0)
