"""RabbitMQ topology: the deploy step behind ``ubi broker declare`` (also run at worker start).

Declares the task exchange and the seven quorum queues with their dead-letter arguments, the
dead-letter exchange and ``ubi.tasks.dlq``, and the signal stream's exchange, default
subscriptions and ``ubi.signals.dlq``. Queue arguments are immutable once declared, so they
are chosen once, here and in ``celeryconfig``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from ubi.settings import Settings, get_settings

SIGNAL_EXCHANGE = "ubi.behavioural_signals"
SIGNAL_DLX = "ubi.signals.dlx"
SIGNAL_DLQ = "ubi.signals.dlq"
#: Bounded subscription queues: a full queue rejects publishes (the outbox retries later).
SUBSCRIPTION_MAX_LENGTH = 100_000
SEVERITIES_AT_LEAST = {"INFO": ("INFO", "WARN", "CRITICAL"), "WARN": ("WARN", "CRITICAL"),
                       "CRITICAL": ("CRITICAL",)}


def signal_topology(settings: Settings) -> tuple[Exchange, list[Queue], Queue]:
    """The signal stream's exchange, default subscription queues and their DLQ (SPEC §12)."""
    p = settings.queue_name
    exchange = Exchange(p(SIGNAL_EXCHANGE), type="topic", durable=True)
    dlx = Exchange(p(SIGNAL_DLX), type="fanout", durable=True)
    args = {"x-queue-type": "quorum", "x-dead-letter-exchange": dlx.name,
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
            "x-max-length": SUBSCRIPTION_MAX_LENGTH, "x-delivery-limit": 10}
    # routing key: <tenant>.<scope>.<dimension>.<type>.<severity>
    mmm = Queue(p("ubi.signals.mmm"), exchange=exchange, routing_key="#", durable=True,
                queue_arguments=dict(args))
    detection_bindings = [f"*.*.*.*.{sev}" for sev in SEVERITIES_AT_LEAST["WARN"]]
    from kombu import binding

    detection = Queue(p("ubi.signals.detection"), durable=True, queue_arguments=dict(args),
                      bindings=[binding(exchange, routing_key=rk) for rk in detection_bindings])
    dlq = Queue(p(SIGNAL_DLQ), exchange=dlx, routing_key="", durable=True,
                queue_arguments={"x-queue-type": "quorum"})
    return exchange, [mmm, detection], dlq


def declare_topology(app: Celery | None = None, settings: Settings | None = None,
                     connection: Connection | None = None) -> dict[str, Any]:
    """Declare every exchange and queue UBI relies on; idempotent. Returns what was declared."""
    import celeryconfig

    settings = settings or get_settings()
    own = connection is None
    if connection is None:
        connection = Connection(settings.broker_url,
                                connect_timeout=settings.broker_connect_timeout)
    declared: dict[str, Any] = {"exchanges": [], "queues": []}
    try:
        channel = connection.channel()
        try:
            for exchange in (celeryconfig.TASK_EXCHANGE, celeryconfig.DEAD_LETTER_EXCHANGE):
                exchange.bind(channel).declare()
                declared["exchanges"].append(exchange.name)
            for queue in (*celeryconfig.task_queues, celeryconfig.DEAD_LETTER_QUEUE):
                queue.bind(channel).declare()
                declared["queues"].append(queue.name)
            _route_countdowns(connection)
            exchange, subscriptions, dlq = signal_topology(settings)
            exchange.bind(channel).declare()
            declared["exchanges"].append(exchange.name)
            dlq.exchange.bind(channel).declare()
            declared["exchanges"].append(dlq.exchange.name)
            for queue in (*subscriptions, dlq):
                queue.bind(channel).declare()
                declared["queues"].append(queue.name)
        finally:
            channel.close()
    finally:
        if own:
            connection.release()
    return declared


def _route_countdowns(connection: Connection) -> None:
    """Celery sends a task with a countdown through RabbitMQ's native delayed delivery (the
    shared ``celery_delayed_*`` queues, quorum here), whose exchange forwards a due message
    only to queues bound to it. A worker binds its queues when it starts; the deploy step does
    it too, so a countdown sent before any worker of this deployment started is not dropped."""
    import celeryconfig

    declare_native_delayed_delivery_exchanges_and_queues(
        connection, celeryconfig.broker_native_delayed_delivery_queue_type)
    for queue in celeryconfig.task_queues:
        bind_queue_to_native_delayed_delivery_exchange(connection, queue)


def delete_broker_objects(broker_url: str, declared: dict[str, Any]) -> None:
    """Delete the queues and exchanges ``declare_topology`` reported (a test or benchmark
    run's own, prefixed ones); one that is already gone is skipped."""
    with Connection(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in declared.get("queues", []):
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
        for exchange in declared.get("exchanges", []):
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)
        with contextlib.suppress(Exception):
            channel.close()
