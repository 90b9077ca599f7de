"""Storing a batch (SPEC §3, §8, §9), the ingest worker's use case: exactly once.

The web side (accepting a batch and queueing it) is ``services/batches``. ``store_batch`` runs
in the ingest worker: in one transaction it inserts the new events (the idempotency ledger
decides what is new), adds their counts to the daily rollups, records dirty (actor, day) pairs
for the features step, updates the tenant's freshness, and marks the batch done. A redelivered
message finds the batch done (or every key taken) and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.envelope import (
    Envelope,
    decode_envelopes,
)
from ubi.analytics.events import BehaviouralEvent, map_envelopes
from ubi.analytics.privacy import DropAccount, Pseudonymiser
from ubi.analytics.rollups import rollup_events
from ubi.analytics.taxonomy import (
    EVENT_TYPE_INDEX,
    ROLLUP_COUNTER_COLUMNS,
    SEQUENCE_EVENT_TYPES,
)
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import (
    Batch,
    DailyInteraction,
    DailyWorkItem,
    DirtySubject,
    Event,
    EventKey,
    IngestionState,
    daily_rollups,
    table_of,
    utcnow,
)
from ubi.models.session import dialect_insert, is_postgres
from ubi.observability.metrics import EVENTS_PROCESSED
from ubi.services import (
    audit,
    configs,
    deletions,
    feature_refresh,
    focus_time,
    freshness,
)
from ubi.services.followups import enqueue_followup
from ubi.store import bulk, partitions
from ubi.tasks import names

log = logging.getLogger("ubi.ingest")



@dataclass
class StoreOutcome:
    batch_id: str
    inserted: int = 0
    duplicates: int = 0
    counted_only: int = 0
    dropped: dict[str, Any] = field(default_factory=dict)
    dirty: int = 0
    skipped: bool = False
    tenants: list[str] = field(default_factory=list)


def claim_batch(session: Session, batch_id: str, tenant_id: str, correlation_id: str | None,
                received_at: datetime) -> bool:
    """Mark the batch processing (its own short transaction); False if it is already done."""
    batch = session.get(Batch, (tenant_id, batch_id), with_for_update=is_postgres(session))
    if batch is None:
        # The web committed nothing (it failed after publishing): the message is the record.
        batch = Batch(batch_id=batch_id, tenant_id=tenant_id, status="processing",
                      correlation_id=correlation_id, total=0, accepted=0, rejected=0,
                      duplicates=0, inserted=0, stored_duplicates=0, counted_only=0, dropped={},
                      attempts=0, created_at=received_at)
        session.add(batch)
    elif batch.status == "done":
        return False
    batch.status = "processing"
    batch.attempts = (batch.attempts or 0) + 1
    batch.started_at = batch.started_at or utcnow()
    return True


def store_batch(session: Session, *, batch_id: str, tenant_id: str, events_json: str,
                received_at: datetime, correlation_id: str | None,
                pseudonymiser: Pseudonymiser, today: date | None = None) -> StoreOutcome:
    """Store a batch's events exactly once, with rollups and follow-up work (one transaction)."""
    outcome = StoreOutcome(batch_id)
    batch = session.get(Batch, (tenant_id, batch_id), with_for_update=is_postgres(session))
    if batch is not None and batch.status == "done":
        outcome.skipped = True
        return outcome
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    envelopes = decode_envelopes(events_json)
    timings["decode"] = time.perf_counter() - t0
    today = today or clock.today()

    by_tenant: dict[str, list[Envelope]] = defaultdict(list)
    for env in envelopes:
        by_tenant[env.tenant_id].append(env)
    dropped: Counter[str] = Counter()
    all_accounts: dict[str, DropAccount] = {}
    for tid, items in sorted(by_tenant.items()):
        t1 = time.perf_counter()
        config = configs.load_config(session, tid)
        account = DropAccount()
        events, not_stored = map_envelopes(items, config, pseudonymiser, account)
        for env, reason in not_stored:
            dropped[reason] += 1
            if reason == "unsupported_signal_kind":
                outcome.counted_only += 1
                EVENTS_PROCESSED.labels(tid, env.signal_kind, "counted").inc()
            else:
                EVENTS_PROCESSED.labels(tid, type_label(env.signal_type), "dropped").inc()
        timings["map"] = timings.get("map", 0.0) + time.perf_counter() - t1
        inserted = _store_tenant_events(session, tid, config, events, batch_id, correlation_id,
                                        received_at, today, outcome, timings)
        outcome.inserted += len(inserted)
        outcome.duplicates += len(events) - len(inserted)
        all_accounts[tid] = account
        if not account.empty or dropped:
            _audit_drops(session, tid, batch_id, correlation_id, account, dropped)
        for event_type, n in Counter(e.event_type for e in inserted).items():
            EVENTS_PROCESSED.labels(tid, event_type, "stored").inc(n)
        if len(events) > len(inserted):
            EVENTS_PROCESSED.labels(tid, "-", "duplicate").inc(len(events) - len(inserted))
        outcome.tenants.append(tid)

    keys_dropped: Counter[str] = Counter()
    tagged: Counter[str] = Counter()
    for account in all_accounts.values():
        keys_dropped.update(account.disallowed_keys)
        tagged.update(account.tagged_keys)
    outcome.dropped = {
        "disallowed_type": dropped.get("disallowed_type", 0),
        "unsupported_signal_kind": dropped.get("unsupported_signal_kind", 0),
        "disallowed_property_keys": dict(keys_dropped),
        "privacy_tagged_keys": dict(tagged),
    }
    values = dict(status="done", inserted=outcome.inserted, stored_duplicates=outcome.duplicates,
                  counted_only=outcome.counted_only, dropped=outcome.dropped,
                  finished_at=utcnow(), error=None)
    if batch is None:
        session.add(Batch(batch_id=batch_id, tenant_id=tenant_id, correlation_id=correlation_id,
                          total=len(envelopes), accepted=len(envelopes), rejected=0,
                          duplicates=0, attempts=1, created_at=received_at,
                          started_at=utcnow(), **values))
    else:
        for k, v in values.items():
            setattr(batch, k, v)
    session.flush()
    timings["total"] = time.perf_counter() - t0
    log.info("batch stored", extra={"ubi": {
        "inserted": outcome.inserted, "duplicates": outcome.duplicates,
        "dirty": outcome.dirty, "timings_ms": {k: round(v * 1000, 2)
                                                for k, v in timings.items()}}})
    return outcome


#: The ``events`` columns COPYed, in the order ``_store_tenant_events`` gives their values.
_EVENT_COLUMNS = ("tenant_id", "event_date", "event_id", "actor_id", "actor_type", "team_id",
                  "source_system", "event_type", "timestamp_utc", "utc_offset_minutes",
                  "ingested_at", "received_at", "properties", "resource", "privacy_tags",
                  "schema_version", "trace_id", "span_id", "correlation_id", "environment",
                  "producer_id", "sequence_no", "batch_id")


def _store_tenant_events(session: Session, tenant_id: str, config: TenantConfig,
                         events: list[BehaviouralEvent], batch_id: str,
                         correlation_id: str | None, received_at: datetime, today: date,
                         outcome: StoreOutcome,
                         timings: dict[str, float]) -> list[BehaviouralEvent]:
    if not events:
        return []
    t = time.perf_counter()
    partitions.ensure_partitions(session, {e.timestamp_utc.date() for e in events}, today=today)
    timings["partitions"] = timings.get("partitions", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    deleted = deletions.in_flight_filter(session, tenant_id, received_at)
    if deleted is not None:
        # A deletion was requested while this batch was in flight: its events in scope are
        # not stored, and their keys become tombstones like those of the deleted events.
        gone = [e for e in events if deleted(e)]
        if gone:
            bulk.insert_new_keys(session, table_of(EventKey), {
                "event_id": [e.event_id for e in gone],
                "event_date": [e.timestamp_utc.date() for e in gone],
                "actor_id": [deletions.TOMBSTONE_ACTOR] * len(gone)},
                key_columns=("tenant_id", "event_id"), constants={"tenant_id": tenant_id})
            events = [e for e in events if not deleted(e)]
            if not events:
                return []
    new_keys = bulk.insert_new_keys(session, table_of(EventKey), {
        "event_id": [e.event_id for e in events],
        "event_date": [e.timestamp_utc.date() for e in events],
        "actor_id": [e.actor_id for e in events]},
        key_columns=("tenant_id", "event_id"), constants={"tenant_id": tenant_id})
    new_ids = {k[1] for k in new_keys}
    inserted = [e for e in events if e.event_id in new_ids]
    timings["keys"] = timings.get("keys", 0.0) + time.perf_counter() - t
    if not inserted:
        return []

    t = time.perf_counter()
    now = utcnow()
    bulk.copy_tuples(session, table_of(Event), _EVENT_COLUMNS, [(
        tenant_id, e.timestamp_utc.date(), e.event_id, e.actor_id, e.actor_type, e.team_id,
        e.source_system, e.event_type, e.timestamp_utc, e.utc_offset_minutes, e.ingested_at,
        received_at, e.properties, e.resource, e.privacy_tags, e.schema_version, e.trace_id,
        e.span_id, e.correlation_id or correlation_id, e.environment, e.producer_id,
        e.sequence_no, batch_id) for e in inserted])
    timings["events"] = timings.get("events", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    delta = rollup_events(inserted, config)
    bulk.upsert_columns(session, daily_rollups, delta.columns(), constants={
        "tenant_id": tenant_id, "updated_at": now},
        key_columns=("tenant_id", "actor_id", "day"), add=ROLLUP_COUNTER_COLUMNS,
        bit_or=("hours_mask", "local_days"), least=("first_event_at",), greatest=("last_event_at",),
        replace=("actor_type", "team_id", "updated_at"))
    if delta.interactions:
        actors, days, counterparts = zip(*delta.interactions, strict=True)
        bulk.upsert_columns(session, table_of(DailyInteraction), {
            "actor_id": actors, "day": days, "counterpart_id": counterparts,
            "events": np.fromiter(delta.interactions.values(), dtype=np.int64,
                                  count=len(delta.interactions))},
            constants={"tenant_id": tenant_id},
            key_columns=("tenant_id", "actor_id", "day", "counterpart_id"), add=("events",))
    if delta.work_items:
        actors, days, items = zip(*delta.work_items, strict=True)
        counts = np.asarray(list(delta.work_items.values()), dtype=np.int64)
        bulk.upsert_columns(session, table_of(DailyWorkItem), {
            "actor_id": actors, "day": days, "work_item_id": items, "events": counts[:, 0],
            "llm_requests": counts[:, 1]}, constants={"tenant_id": tenant_id},
            key_columns=("tenant_id", "actor_id", "day", "work_item_id"),
            add=("events", "llm_requests"))
    timings["rollups"] = timings.get("rollups", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    # Late events within the tenant's window recompute their day; older ones are only stored,
    # and their days wait for the full recompute (SPEC §3).
    oldest = today - timedelta(days=config.late_event_days)
    marked = {(e.actor_id, e.timestamp_utc.date()) for e in inserted
              if e.timestamp_utc.date() >= oldest}
    feature_refresh.mark(session, tenant_id, feature_refresh.ALL,
                         {d for e in inserted if (d := e.timestamp_utc.date()) < oldest}, now)
    # Focus time is the features step's, for the pairs it computes (and the day after each);
    # days older than the window are never computed there, so their focus is refreshed here.
    old_sequences = {(e.actor_id, e.timestamp_utc.date()) for e in inserted
                     if e.event_type in SEQUENCE_EVENT_TYPES
                     and e.timestamp_utc.date() < oldest}
    # The pairs whose focus the features step must refresh: sequence events of the window's
    # days, and the days after older ones (a session counts on the day it ends).
    focus_marked = {(e.actor_id, e.timestamp_utc.date()) for e in inserted
                    if e.event_type in SEQUENCE_EVENT_TYPES
                    and e.timestamp_utc.date() >= oldest}
    if old_sequences:
        affected = focus_time.affected_days(old_sequences)
        focus_time.refresh_focus(session, tenant_id, {p for p in affected if p[1] < oldest})
        later = {p for p in affected if p[1] >= oldest}
        marked |= later
        focus_marked |= later
    timings["focus"] = timings.get("focus", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    dirty = sorted(marked)
    if dirty:
        # marked_at stays the oldest pending change: "dirty since", what features lag is.
        bulk.upsert_columns(
            session, table_of(DirtySubject),
            {"actor_id": [a for a, _ in dirty], "day": [d for _, d in dirty],
             "focus": np.fromiter((p in focus_marked for p in dirty), dtype=np.int16,
                                  count=len(dirty))},
            constants={"tenant_id": tenant_id, "correlation_id": correlation_id,
                       "batch_id": batch_id, "marked_at": now},
            key_columns=("tenant_id", "actor_id", "day"), replace=("correlation_id", "batch_id"),
            bit_or=("focus",))
        outcome.dirty += len(dirty)
    _update_ingestion_state(session, tenant_id, inserted, received_at, now)
    # Follow-ups last, detect before features: an absorbed follow-up locks its pending row
    # until this commit, and the features step owes detect, then its own continuation, in
    # that order too (one lock order, no deadlock).
    if freshness.detection_due(session, tenant_id, now=now):
        # The batch moved event time past a day's end: that day can be evaluated.
        enqueue_followup(session, names.DETECT_TENANT, tenant_id=tenant_id,
                         kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id},
                         dedupe_key=f"detect:{tenant_id}", correlation_id=correlation_id)
    if dirty:
        enqueue_followup(session, names.COMPUTE_FEATURES, tenant_id=tenant_id,
                         kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id},
                         dedupe_key=f"features:{tenant_id}", correlation_id=correlation_id)
    timings["state"] = timings.get("state", 0.0) + time.perf_counter() - t
    return inserted


def _update_ingestion_state(session: Session, tenant_id: str, events: list[BehaviouralEvent],
                            received_at: datetime, now: datetime) -> None:
    newest_ingested = max(e.ingested_at for e in events)
    newest_event = max(e.timestamp_utc for e in events)
    table = IngestionState.__table__
    stmt = dialect_insert(session, table).values(
        tenant_id=tenant_id, newest_ingested_at=newest_ingested, newest_event_at=newest_event,
        newest_event_received_at=received_at, last_received_at=received_at,
        events_total=len(events), pending_events=0, updated_at=now)
    ex = stmt.excluded
    greatest = sa.func.greatest if is_postgres(session) else sa.func.max
    # (Every SET expression reads the row as it was before this statement.)
    raises_newest = sa.or_(table.c.newest_event_at.is_(None),
                           ex.newest_event_at > table.c.newest_event_at)
    session.execute(stmt.on_conflict_do_update(index_elements=["tenant_id"], set_={
        "newest_ingested_at": sa.case((table.c.newest_ingested_at.is_(None),
                                       ex.newest_ingested_at),
                                      else_=greatest(table.c.newest_ingested_at,
                                                     ex.newest_ingested_at)),
        "newest_event_at": sa.case((table.c.newest_event_at.is_(None), ex.newest_event_at),
                                   else_=greatest(table.c.newest_event_at, ex.newest_event_at)),
        "newest_event_received_at": sa.case((raises_newest, ex.last_received_at),
                                            else_=table.c.newest_event_received_at),
        "last_received_at": sa.case((table.c.last_received_at.is_(None), ex.last_received_at),
                                    else_=greatest(table.c.last_received_at,
                                                   ex.last_received_at)),
        "events_total": table.c.events_total + ex.events_total,
        "updated_at": ex.updated_at,
    }))


def _audit_drops(session: Session, tenant_id: str, batch_id: str, correlation_id: str | None,
                 account: DropAccount, dropped: Counter[str]) -> None:
    """One audit entry per batch and tenant: key names and counts, never values."""
    audit.record(
        session, tenant_id=tenant_id, now=utcnow(), action="ingest.dropped",
        principal="ubi-ingest", batch_id=batch_id, correlation_id=correlation_id,
        details={"disallowed_property_keys": dict(account.disallowed_keys),
                 "privacy_tagged_keys": dict(account.tagged_keys),
                 "privacy_tagged_events": account.tagged_events,
                 "dropped_events": dict(dropped)})


def type_label(signal_type: str) -> str:
    """The ``event_type`` label of ``ubi_events_processed_total``: a canonical type, or
    ``other`` (the label set stays bounded whatever types producers send)."""
    return signal_type if signal_type in EVENT_TYPE_INDEX else "other"
