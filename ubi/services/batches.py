"""Accepting a batch (SPEC §3, §6, §9), the API's use case, and the batch's lifecycle.

``accept_batch`` validates every envelope (msgspec), rejects the bad ones with their index and
code, drops known duplicates and records the batch; after the caller's commit ``queue_batch``
hands ONE message to the broker with publisher confirms, which is what a 202 promises (the
ingest worker stores it: ``services/ingest``). A publish the broker refused marks the batch
failed and raises :class:`BrokerUnavailable`, so the client retries without duplicates.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import amqp.exceptions
import kombu.exceptions
import msgspec
import sqlalchemy as sa
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.envelope import BatchFormatError, Envelope, split_batch, validate_item
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Batch, EventKey, IngestionState, session_scope, utcnow
from ubi.models.session import is_postgres
from ubi.observability import context, tracing
from ubi.observability.metrics import BATCHES_UNQUEUED, EVENTS_PROCESSED
from ubi.services import configs
from ubi.services.ingest import type_label
from ubi.settings import Settings
from ubi.store import bulk

log = logging.getLogger("ubi.ingest")

#: Failures of the broker while publishing: the batch was not queued.
BROKER_ERRORS = (kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
                 ConnectionError, OSError, TimeoutError)


class BrokerUnavailable(Exception):
    """The broker did not confirm the batch's message: nothing was accepted (a 503)."""


class BatchTooLarge(ValueError):
    pass


@dataclass
class AcceptedBatch:
    """What the API answers (SPEC §3): ``batch_id``, ``results`` and ``summary``."""

    batch_id: str
    results: list[dict[str, Any]]
    summary: dict[str, int]
    #: The message to publish, or None when nothing needs processing.
    message: dict[str, Any] | None = None
    tenant_counts: dict[str, int] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "results": self.results, "summary": self.summary}


def _known_ids(session: Session, tenant_id: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the tenant has already stored (the idempotency ledger)."""
    if is_postgres(session):  # one array parameter, not one bind parameter per id
        return set(session.connection().exec_driver_sql(
            "SELECT event_id FROM event_keys WHERE tenant_id = %(t)s "
            "AND event_id = ANY(%(ids)b::varchar[])", {"t": tenant_id, "ids": ids}).scalars())
    known: set[str] = set()
    for part in bulk.chunks(ids, 5000):
        known.update(session.execute(
            sa.select(EventKey.event_id).where(EventKey.tenant_id == tenant_id,
                                               EventKey.event_id.in_(list(part)))).scalars())
    return known


def accept_batch(session: Session, body: bytes, *, caller_tenant: str | None,
                   privileged: bool, max_batch: int, now: datetime | None = None,
                   request_id: str | None = None, correlation_id: str | None = None,
                   submitted_by: str | None = None) -> AcceptedBatch:
    """Validate a request body, decide each item's fate and record the batch (no commit).

    The caller commits, then hands it to :func:`queue_batch`.
    """
    raws = split_batch(body)
    if not raws:
        raise BatchFormatError("the batch contains no events")
    if len(raws) > max_batch:
        raise BatchTooLarge(f"{len(raws)} events in one batch; the limit is {max_batch}")
    now = now or clock.utcnow()
    results: list[dict[str, Any]] = []
    accepted: list[tuple[int, Envelope, bytes]] = []
    seen: set[tuple[str, str]] = set()

    tenant_configs: dict[str, TenantConfig] = {}

    def config_for(tenant_id: str) -> TenantConfig:
        config = tenant_configs.get(tenant_id)
        if config is None:  # once per tenant and batch, not per item
            config = tenant_configs[tenant_id] = configs.load_config(session, tenant_id)
        return config

    for index, raw in enumerate(raws):
        env, error = validate_item(bytes(raw), caller_tenant=caller_tenant,
                                   privileged=privileged, config_for=config_for, now=now)
        signal_id = env.signal_id if env is not None else _peek_signal_id(raw)
        if error is not None:
            results.append({"index": index, "signal_id": signal_id, "status": "rejected",
                            "error_code": error.code, "error_message": error.message})
            tenant_label = env.tenant_id if env is not None and (
                privileged or env.tenant_id == caller_tenant) else caller_tenant or "-"
            EVENTS_PROCESSED.labels(tenant_label, type_label(env.signal_type) if env else "-",
                                    "rejected").inc()
            continue
        assert env is not None
        key = (env.tenant_id, env.signal_id)
        if key in seen:
            results.append({"index": index, "signal_id": signal_id, "status": "duplicate"})
            EVENTS_PROCESSED.labels(env.tenant_id, "-", "duplicate").inc()
            continue
        seen.add(key)
        results.append({"index": index, "signal_id": signal_id, "status": "accepted"})
        accepted.append((index, env, bytes(raw)))

    by_tenant: dict[str, list[str]] = defaultdict(list)
    for _, env, _ in accepted:
        by_tenant[env.tenant_id].append(env.signal_id)
    known: set[tuple[str, str]] = set()
    for tenant_id, ids in by_tenant.items():
        known.update((tenant_id, i) for i in _known_ids(session, tenant_id, ids))
    kept: list[bytes] = []
    tenant_counts: Counter[str] = Counter()
    for index, env, item in accepted:
        if (env.tenant_id, env.signal_id) in known:
            results[index]["status"] = "duplicate"
            EVENTS_PROCESSED.labels(env.tenant_id, "-", "duplicate").inc()
        else:
            kept.append(item)
            tenant_counts[env.tenant_id] += 1
    statuses = Counter(r["status"] for r in results)
    summary = {"total": len(results), "accepted": statuses["accepted"],
               "duplicates": statuses["duplicate"], "rejected": statuses["rejected"]}
    batch_id = str(uuid.uuid4())
    batch_tenant = caller_tenant or (next(iter(tenant_counts)) if len(tenant_counts) == 1
                                     else "*")
    message = None
    if kept:
        message = {
            "batch_id": batch_id, "tenant_id": batch_tenant,
            "events_json": (b"[" + b",".join(kept) + b"]").decode(),
            "received_at": now.isoformat(), "correlation_id": correlation_id or batch_id,
            "request_id": request_id,
        }
    # Every item's result already holds only what applies to it (a null signal_id included).
    accepted_batch = AcceptedBatch(batch_id, results, summary, message, dict(tenant_counts))
    _record_batch(session, accepted_batch, batch_tenant, now, request_id, correlation_id,
                  submitted_by)
    return accepted_batch


def queue_batch(accepted: AcceptedBatch, settings: Settings) -> None:
    """Publish the committed batch's message with confirms (nothing to do when it has none).

    The one message sent outside the task outbox (raw envelopes are not stored in PostgreSQL
    to wait there): the broker's confirm is what the 202 rests on, so a refusal marks the
    batch failed and raises :class:`BrokerUnavailable`."""
    if accepted.message is None:
        return
    from ubi.tasks.ingest import ingest_batch

    # The rest of the request's logs, and the publish, name the batch and its correlation id
    # (the client's, else the batch id), as its tasks' logs do.
    tenant_id = str(accepted.message.get("tenant_id"))
    context.bind(batch_id=accepted.batch_id, tenant_id=tenant_id,
                 correlation_id=accepted.message.get("correlation_id"))
    try:
        with tracing.span("ubi.ingest.publish", kind=SpanKind.PRODUCER,
                          attributes={"ubi.batch_id": accepted.batch_id,
                                      "ubi.tenant_id": tenant_id}):
            ingest_batch.apply_async(kwargs=accepted.message, task_id=accepted.batch_id)
    except BROKER_ERRORS as exc:
        log.warning("batch %s not queued: %s", accepted.batch_id, exc)
        with session_scope(settings) as session:
            mark_publish_failed(session, tenant_id, accepted.batch_id, repr(exc))
        raise BrokerUnavailable(str(exc)) from exc


def _peek_signal_id(raw: msgspec.Raw) -> str | None:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    sid = value.get("signal_id") if isinstance(value, dict) else None
    return sid if isinstance(sid, str) else None


def _record_batch(session: Session, accepted: AcceptedBatch, tenant_id: str, now: datetime,
                  request_id: str | None, correlation_id: str | None,
                  submitted_by: str | None) -> None:
    s = accepted.summary
    session.add(Batch(
        batch_id=accepted.batch_id, tenant_id=tenant_id,
        status="queued" if accepted.message else "done",
        submitted_by=submitted_by, request_id=request_id,
        correlation_id=correlation_id or accepted.batch_id, total=s["total"],
        accepted=s["accepted"], rejected=s["rejected"], duplicates=s["duplicates"],
        inserted=0, stored_duplicates=0, counted_only=0, dropped={}, attempts=0,
        created_at=now, finished_at=None if accepted.message else now))


def mark_publish_failed(session: Session, tenant_id: str, batch_id: str, error: str) -> None:
    """The broker refused the batch: nothing was accepted, the client must retry."""
    session.execute(sa.update(Batch).where(Batch.tenant_id == tenant_id,
                                           Batch.batch_id == batch_id).values(
        status="failed", error=f"not queued: {error}"[:2000], finished_at=utcnow()))


#: A batch still ``queued`` this long after it was accepted was almost certainly never
#: published: the web process stopped between its commit and the publish, so the client got
#: no 202 and sends it again (its events are de-duplicated by id). Far beyond any backlog the
#: ingest workers are sized for; a message that arrives later is still stored (``claim_batch``
#: takes any batch that is not done) and the batch becomes ``done``.
UNQUEUED_BATCH_BOUND = timedelta(hours=1)
UNQUEUED_REASON = ("not queued: no ingest worker started it within {bound}; the web process "
                   "most likely stopped before publishing it, so the client got no 202 and "
                   "retries (if the message arrives after all, the batch is still stored)")


def expire_unqueued_batches(session: Session, *, now: datetime | None = None,
                            bound: timedelta = UNQUEUED_BATCH_BOUND) -> dict[str, int]:
    """Mark batches left ``queued`` longer than ``bound`` failed, with the reason; returns
    how many per tenant (counted in ``ubi_batches_unqueued_total``)."""
    now = now or clock.utcnow()
    expired = session.execute(
        sa.update(Batch).where(Batch.status == "queued", Batch.created_at < now - bound)
        .values(status="failed", error=UNQUEUED_REASON.format(bound=bound), finished_at=now)
        .returning(Batch.tenant_id, Batch.batch_id)).all()
    counts = Counter(tenant_id for tenant_id, _ in expired)
    for tenant_id, batch_id in expired:
        log.warning("batch %s never left queued: marked failed", batch_id,
                    extra={"ubi": {"tenant_id": tenant_id, "batch_id": batch_id}})
    for tenant_id, n in counts.items():
        BATCHES_UNQUEUED.labels(tenant_id=tenant_id).inc(n)
    return dict(counts)


def mark_batch_failed(session: Session, tenant_id: str, batch_id: str, error: str) -> None:
    """The batch's message is dead-lettered; say so in its status (a stored batch stays
    ``done``: only a redelivered copy of its message failed)."""
    session.execute(sa.update(Batch).where(Batch.tenant_id == tenant_id,
                                           Batch.batch_id == batch_id,
                                           Batch.status != "done").values(
        status="failed", error=error[:2000], finished_at=utcnow()))


def pending_by_tenant(session: Session) -> dict[str, int]:
    """Events accepted and not yet processed, per tenant (SPEC §11 ``ubi_queue_size``): every
    tenant that ever stored events or has a batch in flight, 0 when it has none pending."""
    pending = dict.fromkeys(session.execute(sa.select(IngestionState.tenant_id)).scalars(), 0)
    pending.update({t: int(n) for t, n in session.execute(
        sa.select(Batch.tenant_id, sa.func.sum(Batch.accepted))
        .where(Batch.status.in_(("queued", "processing"))).group_by(Batch.tenant_id))})
    return pending


def batch_status(session: Session, batch_id: str, tenant_id: str | None) -> Batch | None:
    """The batch of ``tenant_id`` (its key); with None, of any tenant (a privileged
    caller, who may also read a mixed-tenant batch, tenant ``*``; by ``ix_batches_batch_id``)."""
    if tenant_id is not None:
        return session.get(Batch, (tenant_id, batch_id))
    return session.execute(sa.select(Batch).where(Batch.batch_id == batch_id)).scalars().first()


def describe_batch(batch: Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id, "tenant_id": batch.tenant_id, "status": batch.status,
        "created_at": batch.created_at, "started_at": batch.started_at,
        "finished_at": batch.finished_at, "attempts": batch.attempts, "error": batch.error,
        "counts": {"total": batch.total, "accepted": batch.accepted,
                   "rejected": batch.rejected, "duplicates": batch.duplicates,
                   "inserted": batch.inserted, "stored_duplicates": batch.stored_duplicates,
                   "counted_only": batch.counted_only},
        "dropped": batch.dropped or {},
    }
