"""Draining the signal outbox to the stream (SPEC §12): at-least-once, in version order.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (several publishers never send the same row at
once), published with confirms, and marked published only after the broker confirmed. A
failed publish (broker down, no binding, a full bounded queue) stays pending and is retried
with exponential backoff and jitter; later versions of the same signal wait for it, so
consumers see versions in order. A per-tenant quota per drain bounds the publish rate one
tenant can impose on consumers.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.orm import Session

from ubi import clock
from ubi.integrations.signal_stream import PublishResult
from ubi.models import SignalOutbox
from ubi.models.session import is_postgres
from ubi.observability import context, tracing
from ubi.services.backoff import equal_jitter

log = logging.getLogger("ubi.stream")

#: Messages one tenant may publish per drain (beat drains every few seconds).
TENANT_QUOTA_PER_DRAIN = 500
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0


class Publisher(Protocol):
    def publish(self, *, message_id: str, routing_key: str, payload: dict,
                headers: dict) -> PublishResult: ...


@dataclass
class DrainReport:
    published: int = 0
    failed: int = 0
    deferred: int = 0


def drain_signal_outbox(session: Session, publisher: Publisher, *, limit: int = 2000,
                        now: datetime | None = None) -> DrainReport:
    """Publish due outbox rows (one transaction; call again until nothing is due)."""
    now = now or clock.utcnow()
    report = DrainReport()
    waiting = set(session.execute(sa.select(SignalOutbox.signal_id).where(
        SignalOutbox.status == "pending", SignalOutbox.next_attempt_at > now)).scalars())
    stmt = sa.select(SignalOutbox).where(
        SignalOutbox.status == "pending", SignalOutbox.next_attempt_at <= now).order_by(
        SignalOutbox.id).limit(limit)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    per_tenant: Counter[str] = Counter()
    for row in session.execute(stmt).scalars():
        if row.signal_id in waiting or per_tenant[row.tenant_id] >= TENANT_QUOTA_PER_DRAIN:
            report.deferred += 1  # an earlier version waits for a retry, or over the quota
            continue
        per_tenant[row.tenant_id] += 1
        result = _publish(publisher, row)
        row.attempts += 1
        if result.ok:
            row.status, row.published_at, row.last_error = "published", now, None
            report.published += 1
        else:
            row.next_attempt_at = now + equal_jitter(
                row.attempts, base_s=BACKOFF_BASE_SECONDS, cap_s=BACKOFF_MAX_SECONDS)
            row.last_error = result.error
            waiting.add(row.signal_id)
            report.failed += 1
            log.warning("signal not published yet: %s", result.error,
                        extra={"ubi": {"signal_id": row.signal_id, "version": row.version}})
    return report


def _publish(publisher: Publisher, row: SignalOutbox) -> PublishResult:
    """One row's publish: a span continuing the trace that wrote the row (its headers'
    ``traceparent``), logs naming the row's correlation id, and the message carrying this
    span's ``traceparent`` to the stream's consumers."""
    headers = dict(row.headers or {})
    with context.bound(tenant_id=row.tenant_id, correlation_id=headers.get("correlation_id")), \
            tracing.span("ubi.signal.publish", parent_headers=headers, kind=SpanKind.PRODUCER,
                         attributes={"ubi.tenant_id": row.tenant_id,
                                     "ubi.signal_id": row.signal_id,
                                     "ubi.signal_version": row.version,
                                     "messaging.rabbitmq.destination.routing_key":
                                         row.routing_key}) as span:
        headers = tracing.inject(headers)
        result = publisher.publish(message_id=f"{row.signal_id}:{row.version}",
                                   routing_key=row.routing_key, payload=row.payload,
                                   headers=headers)
        if not result.ok:
            span.set_status(Status(StatusCode.ERROR, result.error))
    return result
