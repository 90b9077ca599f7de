"""The batch message on the wire: what the API publishes and the ingest worker consumes (its
own module: no worker may be consuming while the test reads the queue)."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from kombu import Connection, compression

from tests.support.envelopes import envelope, post_events, wait_for_batch
from tests.support.workers import running_worker
from ubi.models import Event


def test_batch_message_is_compressed_orjson_and_stored_by_the_worker(
        client, tokens, db_session, settings, broker) -> None:
    """The batch message travels as ``application/x-ubi-orjson`` (its thousand envelopes as
    one JSON text) compressed by zstd, and a worker takes it."""
    token = tokens("acme", "ubi:write:events")
    items = [envelope(actor=f"dev{i}", payload={"outcome": 'say "hi"\\ \u00e9'})
             for i in range(3)]
    resp = post_events(client, token, items)
    assert resp.status_code == 202
    batch_id = resp.json["batch_id"]
    with Connection(settings.broker_url) as conn:
        channel = conn.channel()
        message = channel.basic_get(settings.queue_name("ingest"), no_ack=False)
        assert message is not None
        assert message.content_type == "application/x-ubi-orjson"
        assert message.headers["compression"] == "application/zstd"
        raw = compression.decompress(message.body, "application/zstd")
        assert len(message.body) < len(raw)
        _, kwargs, _ = orjson.loads(raw)
        assert kwargs["batch_id"] == batch_id
        assert [e["signal_id"] for e in orjson.loads(kwargs["events_json"])] == [
            e["signal_id"] for e in items]
        channel.close()  # not acknowledged: back to the queue
    with running_worker("ingest"):
        status = wait_for_batch(client, token, batch_id)
    assert status["status"] == "done" and status["counts"]["inserted"] == 3
    stored = db_session.execute(sa.select(Event.properties)).scalars().all()
    assert stored == [{"outcome": 'say "hi"\\ \u00e9'}] * 3
