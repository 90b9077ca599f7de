"""The signal stream's configuration and state (SPEC §12): named subscriptions and the
per-tenant publish token buckets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.models.base import Base, JSONType, UTCDateTime


class StreamSubscription(Base):
    """A durable queue bound to ``ubi.behavioural_signals`` by its filters (``ubi
    subscriptions``). Filters are lists of allowed values, empty = any; the queue's name is
    ``name`` under the deployment's queue prefix."""

    __tablename__ = "stream_subscriptions"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    tenants: Mapped[list[Any]] = mapped_column(JSONType)
    actor_scopes: Mapped[list[Any]] = mapped_column(JSONType)
    dimensions: Mapped[list[Any]] = mapped_column(JSONType)
    signal_types: Mapped[list[Any]] = mapped_column(JSONType)
    signal_classes: Mapped[list[Any]] = mapped_column(JSONType)
    min_severity: Mapped[str] = mapped_column(sa.String(16))
    #: ``park`` (overflow to the subscription's own parking queue) or ``reject``
    #: (``reject-publish``: the outbox holds the rows back). See docs/stream.md.
    overflow: Mapped[str] = mapped_column(sa.String(16))
    max_length: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StreamRateBucket(Base):
    """A tenant's publish token bucket, shared by every publishing process."""

    __tablename__ = "stream_rate_buckets"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(sa.Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
