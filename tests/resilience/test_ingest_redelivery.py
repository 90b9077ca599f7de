"""At-least-once delivery never double counts: redelivered messages, a worker SIGKILLed in the
middle of a batch (SPEC §3, §9)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.envelopes import envelope, post_events, wait_for_batch
from tests.support.resources import wait_for_lock_waiter
from tests.support.servers import WorkerProcess
from tests.support.workers import running_worker
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import Batch, Event, IngestionState, daily_rollups, session_factory
from ubi.services import ingest


def _batch(n: int = 60) -> list[dict[str, object]]:
    base = clock.utcnow().replace(microsecond=0) - timedelta(days=2)
    types = ["commit_created", "build_failed", "build_succeeded", "test_passed", "pr_reviewed"]
    return [envelope(actor=f"dev{i % 4}", signal_type=types[i % len(types)],
                     occurred_at=base + timedelta(hours=i))
            for i in range(n)]


def _expected_counts(items, settings) -> dict[tuple[str, object], int]:
    alias = Pseudonymiser(settings.pseudonym_secret)
    counts: Counter[tuple[str, object]] = Counter()
    for e in items:
        ts = datetime.fromisoformat(e["occurred_at"]).astimezone(UTC)
        counts[(alias.pseudonym("acme", e["actor_id"]), ts.date())] += 1
    return dict(counts)


def _stored_counts(session) -> dict[tuple[str, object], int]:
    rows = session.execute(sa.select(daily_rollups.c.actor_id, daily_rollups.c.day,
                                      daily_rollups.c.event_count)).all()
    return {(a, d): n for a, d, n in rows}


def _publish_raw(client, tokens, items):
    """Accept a batch through the API with no worker running; return its message."""
    token = tokens("acme", "ubi:write:events")
    resp = post_events(client, token, items)
    assert resp.status_code == 202
    return token, resp.json["batch_id"]


def test_message_delivered_twice_counts_once(client, tokens, db_session, settings,
                                             database, broker) -> None:
    items = _batch()
    token, batch_id = _publish_raw(client, tokens, items)
    from ubi.tasks.ingest import ingest_batch

    # A second copy of the very same message (same task id) sits in the queue.
    message = {"batch_id": batch_id, "tenant_id": "acme",
               "events_json": "[" + ",".join(__import__("json").dumps(e) for e in items) + "]",
               "received_at": clock.utcnow().isoformat(), "correlation_id": batch_id}
    ingest_batch.apply_async(kwargs=message, task_id=batch_id)
    with running_worker("ingest"):
        wait_for_batch(client, token, batch_id)
        time.sleep(1.0)  # let the second copy be consumed too
    assert _stored_counts(db_session) == _expected_counts(items, settings)
    assert db_session.execute(sa.select(sa.func.count()).select_from(Event)).scalar() == 60

    # Even when the batch status is lost (so the copy is processed in full), the idempotency
    # ledger keeps every count equal to a single delivery.
    db_session.execute(sa.update(Batch).values(status="queued"))
    db_session.commit()
    with session_factory()() as s:
        outcome = ingest.store_batch(s, batch_id=batch_id, tenant_id="acme",
                                     events_json=message["events_json"],
                                     received_at=clock.utcnow(), correlation_id=batch_id,
                                     pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    assert outcome.inserted == 0 and outcome.duplicates == 60
    db_session.expire_all()
    assert _stored_counts(db_session) == _expected_counts(items, settings)
    state = db_session.get(IngestionState, "acme")
    assert state.events_total == 60


@pytest.mark.slow
def test_worker_killed_mid_batch_then_redelivered(client, tokens, db_session, settings,
                                                  database, broker) -> None:
    # A first batch creates the tenant's ingestion state row...
    warmup = _batch(4)
    with running_worker("ingest"):
        token, first = _publish_raw(client, tokens, warmup)
        wait_for_batch(client, token, first)
    items = _batch()[4:]
    # ...which this test then holds locked, so the next batch stalls mid-transaction (events
    # and rollups written, state update waiting) while its worker gets SIGKILLed.
    engine = session_factory().kw["bind"]
    blocker = engine.connect()
    tx = blocker.begin()
    blocker.execute(sa.text("SELECT 1 FROM ingestion_state WHERE tenant_id = 'acme' FOR UPDATE"))
    token, batch_id = _publish_raw(client, tokens, items)
    worker = WorkerProcess("ingest")
    try:
        if not wait_for_lock_waiter(engine, timeout=60):
            worker.stop()
            activity = blocker.execute(sa.text(
                "SELECT state, wait_event_type, wait_event, left(query, 120) "
                "FROM pg_stat_activity WHERE datname = current_database()")).all()
            raise AssertionError(f"the worker never reached the locked row: {activity} "
                                 f"{worker.log_tail()}")
        worker.kill()
    finally:
        tx.rollback()
        blocker.close()
        worker.stop()
    assert db_session.get(Batch, ("acme", batch_id)).status == "processing"  # claimed, then died
    assert db_session.execute(sa.select(sa.func.count()).select_from(Event)).scalar() == 4

    with running_worker("ingest"):  # RabbitMQ redelivers the unacknowledged message
        status = wait_for_batch(client, token, batch_id, timeout=60)
    assert status["status"] == "done" and status["counts"]["inserted"] == 56
    assert status["attempts"] == 2
    db_session.expire_all()
    assert _stored_counts(db_session) == _expected_counts(warmup + items, settings)
    assert db_session.get(IngestionState, "acme").events_total == 60
