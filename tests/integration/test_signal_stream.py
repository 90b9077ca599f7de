"""Signals reach the stream (SPEC §12): every version on ubi.signals.mmm, WARN and CRITICAL on
ubi.signals.detection, message ids <signal_id>:<version>, marked published only when
confirmed; a message nothing is bound for stays pending and is retried."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from kombu import Connection, Exchange

from tests.support.organisation import organisation_events
from ubi.analytics.privacy import Pseudonymiser
from ubi.integrations.broker import SIGNAL_EXCHANGE
from ubi.integrations.signal_stream import SignalPublisher
from ubi.models import SignalOutbox, session_factory
from ubi.services import detection, features, ingest, stream


def _drain_queue(broker_url: str, queue: str) -> list[Any]:
    """The queue's messages (the transport's own type: amqp's ``Message`` for RabbitMQ)."""
    messages = []
    with Connection(broker_url) as conn:
        channel = conn.channel()
        while True:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            messages.append(message)
        channel.close()
    return messages


def test_signals_are_published_once_in_order_with_their_ids(settings, db_session, broker,
                                                              shared_clock) -> None:
    # The suite's Wednesday noon (ticking): yesterday's and this morning's traffic, so that
    # detection evaluates yesterday, and the drain below finds the rows due.
    now = shared_clock.now
    events = organisation_events("acme", end_day=now.date(), until=now, surge_actor="eng03")
    with session_factory()() as s:
        ingest.store_batch(s, batch_id="b1", tenant_id="acme",
                           events_json=json.dumps(events), received_at=now,
                           correlation_id="corr-1",
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        features.compute_tenant_features(s, "acme")
        detection.detect_tenant(s, "acme", correlation_id="corr-1")
        s.commit()
    for q in ("ubi.signals.mmm", "ubi.signals.detection"):
        _drain_queue(settings.broker_url, settings.queue_name(q))
    rows = db_session.execute(sa.select(SignalOutbox).order_by(SignalOutbox.id)).scalars().all()
    assert rows and all(r.status == "pending" for r in rows)
    db_session.rollback()

    publisher = SignalPublisher(settings)
    with session_factory()() as s:
        report = stream.drain_signal_outbox(s, publisher)
        s.commit()
    assert report.published == len(rows) and report.failed == 0

    mmm = _drain_queue(settings.broker_url, settings.queue_name("ubi.signals.mmm"))
    detect = _drain_queue(settings.broker_url, settings.queue_name("ubi.signals.detection"))
    assert [m.properties["message_id"] for m in mmm] == [f"{r.signal_id}:{r.version}"
                                                         for r in rows]
    assert {m.delivery_info["routing_key"] for m in mmm} == {r.routing_key for r in rows}
    first = mmm[0]
    body = json.loads(first.body)
    assert body["signal_id"] and body["features_snapshot"] is not None
    assert first.headers["tenant_id"] == "acme" and first.headers["schema_version"] == "1.0"
    assert first.headers["correlation_id"] == "corr-1"
    assert first.properties["delivery_mode"] == 2
    severe = [r for r in rows if r.payload["severity"] in ("WARN", "CRITICAL")]
    assert sorted(m.properties["message_id"] for m in detect) == sorted(
        f"{r.signal_id}:{r.version}" for r in severe)
    db_session.expire_all()
    assert all(r.status == "published" and r.published_at for r in db_session.execute(
        sa.select(SignalOutbox)).scalars())
    with session_factory()() as s:  # nothing left to send
        assert stream.drain_signal_outbox(s, publisher).published == 0
        s.commit()
    publisher.close()


def test_an_unroutable_message_stays_pending_and_is_retried(settings, db_session,
                                                            broker, shared_clock) -> None:
    lonely = settings.replace(queue_prefix=settings.queue_prefix + "lonely.")
    exchange = Exchange(lonely.queue_name(SIGNAL_EXCHANGE), type="topic", durable=True)
    with Connection(settings.broker_url) as conn:
        exchange.bind(conn.channel()).declare()  # an exchange with no queue bound
    now = shared_clock.now
    db_session.add(SignalOutbox(
        signal_id="s-1", version=1, tenant_id="acme", routing_key="acme.actor.flow.risk.WARN",
        payload={"signal_id": "s-1"}, headers={"tenant_id": "acme"}, status="pending",
        attempts=0, next_attempt_at=now - timedelta(seconds=1), created_at=now))
    db_session.add(SignalOutbox(
        signal_id="s-1", version=2, tenant_id="acme", routing_key="acme.actor.flow.risk.WARN",
        payload={"signal_id": "s-1"}, headers={"tenant_id": "acme"}, status="pending",
        attempts=0, next_attempt_at=now - timedelta(seconds=1), created_at=now))
    db_session.commit()
    publisher = SignalPublisher(lonely)
    try:
        with session_factory()() as s:
            report = stream.drain_signal_outbox(s, publisher, now=now)
            s.commit()
    finally:
        publisher.close()
        with Connection(settings.broker_url) as conn:
            conn.channel().exchange_delete(exchange.name)
    assert report.published == 0 and report.failed == 1 and report.deferred == 1
    rows = db_session.execute(sa.select(SignalOutbox).order_by(SignalOutbox.version)
                              ).scalars().all()
    assert [r.status for r in rows] == ["pending", "pending"]
    assert rows[0].attempts == 1 and "NO_ROUTE" in rows[0].last_error.upper().replace(" ", "_")
    assert rows[0].next_attempt_at > now
    assert rows[1].attempts == 0  # version 2 waits for version 1
