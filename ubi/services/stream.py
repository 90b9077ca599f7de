"""Draining the signal outbox to the stream (SPEC §12): at-least-once, in version order,
fair between tenants.

One drain, one transaction:

1. Each tenant with due rows takes tokens from its bucket (``stream_rate_buckets``: ``rate``
   messages/s, up to ``burst``; shared by every publishing process, rows locked in tenant
   order), and claims at most that many of its oldest due rows with ``FOR UPDATE SKIP
   LOCKED``. A noisy tenant's backlog therefore neither starves the others in the claim nor
   floods the consumers past its rate.
2. Rows of a signal class or type the tenant has disabled are marked ``suppressed`` and never
   published (SPEC §5.5), except a deletion's final version, which tells consumers to forget
   what they were sent while the class was enabled.
3. The rest go out in rounds: round *k* holds a tenant's *k*-th claimed version of each
   signal, and a signal whose earlier version is still pending elsewhere (backing off, or
   claimed by another drain) waits. A round is published in chunks with pipelined confirms
   (``SignalPublisher.publish_batch``) on a worker thread; round *k* of a tenant starts once
   its round *k - 1* is recorded, and a version that failed (broker down, returned, nacked)
   keeps its signal's later versions back, so consumers see one signal's versions in
   increasing order.
4. Confirmed rows are marked published; failed ones stay pending with exponential backoff and
   jitter. Nothing is marked published that the broker did not confirm. The database work
   (claiming the next tenant, marking a chunk) runs while the broker confirms the next chunk.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.taxonomy import SIGNAL_CLASS_BY_NAME
from ubi.integrations.signal_stream import OutgoingMessage, PublishResult
from ubi.models import SignalOutbox, StreamRateBucket
from ubi.models.session import dialect_insert, is_postgres
from ubi.observability import context, tracing
from ubi.services import configs
from ubi.services.backoff import equal_jitter
from ubi.services.deletions import DELETED_REASON
from ubi.store import bulk

log = logging.getLogger("ubi.stream")

#: Per-tenant publish rate (messages/s) and burst: a tenant with a backlog is drained at this
#: pace whatever the others do; the burst covers a detect run of a large tenant at once.
TENANT_RATE_PER_S = 2_000.0
TENANT_BURST = 20_000.0
#: Rows one drain claims at most, over all tenants.
DRAIN_LIMIT = 20_000
#: Messages per publish call: one is confirmed while the one before is marked published.
PUBLISH_CHUNK = 2_500
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0


class Publisher(Protocol):
    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]: ...


@dataclass
class DrainReport:
    published: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    #: Tenants with due rows left unclaimed because their bucket was empty.
    rate_limited: list[str] = field(default_factory=list)


@dataclass
class _Row:
    id: int
    signal_id: str
    version: int
    tenant_id: str
    routing_key: str
    body: str
    headers: dict[str, Any]
    attempts: int


def drain_signal_outbox(session: Session, publisher: Publisher, *, limit: int = DRAIN_LIMIT,
                        now: datetime | None = None, rate_per_s: float = TENANT_RATE_PER_S,
                        burst: float = TENANT_BURST) -> DrainReport:
    """Publish due outbox rows (one transaction, the caller commits; call again until nothing
    is due)."""
    now = now or clock.utcnow()
    report = DrainReport()
    due = sa.and_(SignalOutbox.status == "pending", SignalOutbox.next_attempt_at <= now)
    tenants = sorted(session.execute(sa.select(SignalOutbox.tenant_id).where(due).distinct())
                     .scalars())
    if not tenants:
        return report
    tokens = _take_tokens(session, tenants, now, rate_per_s, burst)
    share = max(1, limit // len(tenants))
    attempted: dict[str, int] = defaultdict(int)
    unclaimed, claimed = deque(tenants), deque[list[_Row]]()

    def claim_next() -> bool:
        while unclaimed:
            tenant = unclaimed.popleft()
            n = min(int(tokens[tenant]), share)
            if n <= 0:
                report.rate_limited.append(tenant)
                continue
            claimed.append(_suppress_disabled(session, _claim(session, due, tenant, n), report))
            return True
        return False

    # A tenant's signals are its own, so tenants are independent: the next tenant's rows are
    # claimed while the broker confirms a chunk (the database and the broker work at once).
    # Rounds go tenant after tenant (round 0 of each, then round 1 of each, ...), so a round
    # rarely waits for its tenant's previous one.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ubi-publish") as pool:
        pipe = _Pipeline(session, publisher, pool, now, report, attempted, claim_next)
        plans = []
        while claimed or claim_next():
            plan = _rounds(session, claimed.popleft())
            plans.append(plan)
            _submit_round(pipe, plan, 0, report)
        for k in range(1, max((len(p.rounds) for p in plans), default=0)):
            for plan in plans:
                if k < len(plan.rounds):
                    _submit_round(pipe, plan, k, report)
        pipe.settle()
    for tenant, n in attempted.items():
        tokens[tenant] -= n
    _store_tokens(session, tokens, now)
    if report.failed:
        log.warning("%d signal versions not published yet", report.failed)
    return report


def _claim(session: Session, due: Any, tenant: str, n: int) -> list[_Row]:
    o = SignalOutbox
    # The body goes out as the stored JSON text; decoding it here only to encode it again
    # was a fifth of the drain's time.
    stmt = sa.select(o.id, o.signal_id, o.version, o.tenant_id, o.routing_key,
                     sa.cast(o.payload, sa.Text), sa.cast(o.headers, sa.Text),
                     o.attempts).where(due, o.tenant_id == tenant).order_by(o.id).limit(n)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return [_Row(i, sid, v, t, rk, body, orjson.loads(headers), attempts)
            for i, sid, v, t, rk, body, headers, attempts in session.execute(stmt).all()]


def _suppress_disabled(session: Session, rows: list[_Row],
                       report: DrainReport) -> list[_Row]:
    enabled: dict[tuple[str, str], bool] = {}  # (tenant, class) -> enabled, for this drain
    keep, suppressed = [], []
    for row in rows:
        words = row.routing_key.split(".")
        cls = words[4] if len(words) == 6 else ""
        ok = enabled.get((row.tenant_id, cls))
        if ok is None:
            # A key this version did not write (no class word) is published: the broker
            # decides where it goes.
            ok = enabled[(row.tenant_id, cls)] = cls not in SIGNAL_CLASS_BY_NAME or \
                configs.load_config(session, row.tenant_id).signal_class_enabled(cls)
        if ok or json.loads(row.body).get("reason") == DELETED_REASON:
            keep.append(row)
        else:
            suppressed.append(row.id)
    for part in bulk.chunks(suppressed, 5000):
        session.execute(sa.update(SignalOutbox).where(SignalOutbox.id.in_(list(part))).values(
            status="suppressed", last_error="signal class disabled by the tenant"),
            execution_options={"synchronize_session": False})
    report.suppressed += len(suppressed)
    return keep


def _blocked_signals(session: Session, rows: list[_Row]) -> set[str]:
    """Signals with a pending version older than their first claimed one (backing off, or
    claimed by another drain): their claimed versions must wait."""
    first: dict[str, _Row] = {}
    for row in rows:
        first.setdefault(row.signal_id, row)
    # Versions start at 1: only a signal whose first claimed version is later can be blocked.
    later = [r for r in first.values() if r.version > 1]
    blocked = set()
    for part in bulk.chunks(later, 5000):
        stmt = sa.select(SignalOutbox.signal_id, sa.func.min(SignalOutbox.id)).where(
            SignalOutbox.status == "pending",
            SignalOutbox.signal_id.in_([r.signal_id for r in part])
        ).group_by(SignalOutbox.signal_id)
        blocked |= {sid for sid, oldest in session.execute(stmt).all()
                    if oldest < first[sid].id}
    return blocked


class _Pipeline:
    """Publishes chunks on a worker thread, one at a time; a chunk's rows are recorded once
    the next chunk was handed over (or at ``settle``), and the next tenant is claimed while
    one is in flight, so the database work overlaps the broker's confirms."""

    def __init__(self, session: Session, publisher: Publisher, pool: ThreadPoolExecutor,
                 now: datetime, report: DrainReport, attempted: dict[str, int],
                 meanwhile: Callable[[], bool]):
        self.session, self.publisher, self.pool = session, publisher, pool
        self.now, self.report, self.attempted = now, report, attempted
        #: Database work to do while a chunk is being confirmed (claiming the next tenant).
        self.meanwhile = meanwhile
        self.inflight: tuple[Sequence[_Row], Future[list[PublishResult]], set[str]] | None = None

    def submit(self, rows: Sequence[_Row], blocked: set[str]) -> None:
        sent = self.pool.submit(self.publisher.publish_batch, [_outgoing(r) for r in rows])
        self.settle()
        self.inflight = (rows, sent, blocked)

    def settle(self) -> None:
        """Wait for the chunk in flight and record its outcome."""
        if self.inflight is not None:
            if not self.inflight[1].done():
                self.meanwhile()
            rows, sent, blocked = self.inflight
            self.inflight = None
            _record(self.session, rows, sent.result(), self.now, blocked, self.attempted,
                    self.report)


def _outgoing(row: _Row) -> OutgoingMessage:
    """A row's message. With tracing on, its publish is a span continuing the trace that
    wrote the row (the headers' ``traceparent``), and the message carries that span's
    ``traceparent`` to the stream's consumers (a broker refusal shows in the row, not the
    span: confirms come back for the whole chunk later)."""
    message_id = f"{row.signal_id}:{row.version}"
    if not tracing.enabled():
        return OutgoingMessage(message_id, row.routing_key, row.body.encode(), row.headers)
    with context.bound(tenant_id=row.tenant_id,
                       correlation_id=row.headers.get("correlation_id")), \
            tracing.span("ubi.signal.publish", parent_headers=row.headers,
                         kind=SpanKind.PRODUCER,
                         attributes={"ubi.tenant_id": row.tenant_id,
                                     "ubi.signal_id": row.signal_id,
                                     "ubi.signal_version": row.version,
                                     "messaging.rabbitmq.destination.routing_key":
                                         row.routing_key}):
        headers = tracing.inject(dict(row.headers))
    return OutgoingMessage(message_id, row.routing_key, row.body.encode(), headers)


@dataclass
class _Plan:
    """One tenant's claimed rows in rounds: round *k* holds the *k*-th version of each signal.
    ``blocked``: signals whose earlier version is pending or failed (their later versions
    wait)."""

    rounds: list[list[_Row]]
    blocked: set[str]


def _rounds(session: Session, rows: list[_Row]) -> _Plan:
    rounds: list[list[_Row]] = []
    depth: dict[str, int] = defaultdict(int)
    for row in sorted(rows, key=lambda r: r.id):
        k = depth[row.signal_id]
        depth[row.signal_id] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(row)
    return _Plan(rounds, _blocked_signals(session, rows))


def _submit_round(pipe: _Pipeline, plan: _Plan, k: int, report: DrainReport) -> None:
    """Hand round ``k`` over, in chunks (one version per signal: the chunks are independent),
    once round ``k - 1`` of the same tenant is recorded."""
    if pipe.inflight is not None and pipe.inflight[2] is plan.blocked:
        pipe.settle()  # its previous round's last chunk: its failures decide what waits
    ready = [r for r in plan.rounds[k] if r.signal_id not in plan.blocked]
    report.deferred += len(plan.rounds[k]) - len(ready)
    for chunk in bulk.chunks(ready, PUBLISH_CHUNK):
        pipe.submit(chunk, plan.blocked)


def _record(session: Session, rows: Sequence[_Row], results: list[PublishResult],
            now: datetime, blocked: set[str], attempted: dict[str, int],
            report: DrainReport) -> None:
    """Mark confirmed rows published; schedule the failed ones' retry and hold their signals'
    later versions back."""
    published, failures = [], []
    for row, result in zip(rows, results, strict=True):
        attempted[row.tenant_id] += 1
        if result.ok:
            published.append(row.id)
            continue
        blocked.add(row.signal_id)
        attempts = row.attempts + 1
        failures.append({"tenant_id": row.tenant_id, "id": row.id, "attempts": attempts,
                         "last_error": result.error,
                         "next_attempt_at": now + equal_jitter(
                             attempts, base_s=BACKOFF_BASE_SECONDS,
                             cap_s=BACKOFF_MAX_SECONDS)})
    if published:
        session.execute(
            sa.update(SignalOutbox).where(SignalOutbox.id.in_(published)).values(
                status="published", published_at=now, last_error=None,
                attempts=SignalOutbox.attempts + 1),
            execution_options={"synchronize_session": False})
    if failures:
        session.execute(sa.update(SignalOutbox), failures)
        log.warning("signal versions not published yet: %s", failures[0]["last_error"],
                    extra={"ubi": {"failed": len(failures)}})
    report.published += len(published)
    report.failed += len(failures)


def _take_tokens(session: Session, tenants: list[str], now: datetime, rate_per_s: float,
                 burst: float) -> dict[str, float]:
    """Each tenant's tokens now (refilled since its last drain); locks the buckets, in
    tenant order, until the drain commits."""
    stmt = sa.select(StreamRateBucket).where(StreamRateBucket.tenant_id.in_(tenants)).order_by(
        StreamRateBucket.tenant_id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    buckets = {b.tenant_id: b for b in session.execute(stmt).scalars()}
    tokens = {}
    for tenant in tenants:
        b = buckets.get(tenant)
        if b is None:
            tokens[tenant] = burst
        else:
            elapsed = max(0.0, (now - b.updated_at).total_seconds())
            tokens[tenant] = min(burst, b.tokens + elapsed * rate_per_s)
    return tokens


def _store_tokens(session: Session, tokens: dict[str, float], now: datetime) -> None:
    rows = [{"tenant_id": t, "tokens": max(0.0, v), "updated_at": now}
            for t, v in tokens.items()]
    stmt = dialect_insert(session, StreamRateBucket.__table__).values(rows)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id"],
        set_={"tokens": stmt.excluded.tokens, "updated_at": stmt.excluded.updated_at}))
