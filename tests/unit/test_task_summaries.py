"""Task messages name no personal data in their argsrepr/kwargsrepr headers."""

from __future__ import annotations

import json

from ubi.celery_app import app
from ubi.tasks import names
from ubi.tasks.summaries import REDACTED_HEADER, summarise


def test_ids_are_shown_and_everything_else_only_by_size() -> None:
    events = json.dumps([{"actor_id": "alice@example.com", "event_type": "commit_created"}])
    argsrepr, kwargsrepr = summarise((), {
        "batch_id": "b-1", "tenant_id": "acme", "events_json": events,
        "received_at": "2026-03-04T12:00:00+00:00", "correlation_id": None,
        "actors": ["alice", "bob"], "tenant_note": "alice"})
    assert argsrepr == "()"
    assert kwargsrepr == ("{batch_id='b-1', tenant_id='acme', "
                          f"events_json=<{len(events)} bytes>, "
                          "received_at='2026-03-04T12:00:00+00:00', correlation_id=None, "
                          "actors=<2 items>, tenant_note=<5 bytes>}")
    assert "alice" not in argsrepr + kwargsrepr


def test_positional_arguments_are_sizes_only() -> None:
    assert summarise(("alice@example.com", 3, {"a": 1}), None) == (
        "(<17 bytes>, 3, <1 items>)", "{}")


def test_a_published_ingest_message_carries_the_summary() -> None:
    """The headers Celery builds for a real ingest message, after the publish signal ran."""
    from celery import signals

    seen: dict[str, object] = {}

    def capture(headers: dict[str, object] | None = None, **_: object) -> None:
        seen.update(headers or {})

    message = app.amqp.as_task_v2(
        "task-1", names.INGEST_BATCH, kwargs={"batch_id": "b-1", "tenant_id": "acme",
                                              "events_json": '[{"actor_id": "alice"}]'})
    signals.before_task_publish.connect(capture, weak=False)
    try:
        signals.before_task_publish.send(sender=names.INGEST_BATCH, body=message.body,
                                         headers=message.headers, exchange="",
                                         routing_key="ingest", properties={},
                                         declare=[], retry_policy=None)
    finally:
        signals.before_task_publish.disconnect(capture)
    assert seen["kwargsrepr"] == "{batch_id='b-1', tenant_id='acme', events_json=<23 bytes>}"
    assert seen[REDACTED_HEADER] == 1
