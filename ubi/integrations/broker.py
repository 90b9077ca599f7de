"""RabbitMQ topology: the deploy step behind ``ubi broker declare`` (also run at worker start).

Declares the task exchange and the seven quorum queues with their dead-letter arguments, the
dead-letter exchange and ``ubi.tasks.dlq``, and the signal stream's exchange, the
subscriptions configured in ``stream_subscriptions`` (``ubi subscriptions``; the two defaults
are rows like any other), their parking queues, and ``ubi.signals.dlq``. Queue arguments are
immutable once declared, so they are chosen once, here and in ``celeryconfig``.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from amqp.exceptions import NotFound
from celery import Celery
from kombu import Connection, Exchange, Queue, binding
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from ubi.integrations.routing import SubscriptionSpec, binding_keys
from ubi.settings import Settings, get_settings

SIGNAL_EXCHANGE = "ubi.behavioural_signals"
#: Headers exchange: it routes a dead letter by why it died (``x-first-death-reason``).
SIGNAL_DLX = "ubi.signals.dlx"
SIGNAL_DLQ = "ubi.signals.dlq"
PARKING_SUFFIX = ".parking"
#: A parking queue holds this many times its subscription's bound, then drops its oldest.
PARKING_FACTOR = 10
#: Consumer rejections, expiries and deliveries past the limit go to ``ubi.signals.dlq``;
#: overflow (``maxlen``) goes to the overflowing subscription's parking queue.
DLQ_REASONS = ("rejected", "expired", "delivery_limit")
SUBSCRIPTION_DELIVERY_LIMIT = 10
#: A re-driven dead letter counts its re-drives here; its death headers are dropped (a later
#: death is recorded afresh).
REDRIVE_HEADER = "x-ubi-redrives"
DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                 "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                 "x-last-death-reason", "x-delivery-count")


def parking_queue_name(queue: str) -> str:
    return queue + PARKING_SUFFIX


def subscription_queues(settings: Settings, spec: SubscriptionSpec
                        ) -> tuple[Queue, Queue | None]:
    """A subscription's queue (bound by its filters) and, with ``park``, its parking queue.

    ``park``: ``x-overflow: drop-head``: a full queue keeps taking publishes (the publisher
    is never nacked for it, so it holds back no one) and dead-letters its oldest messages,
    which the DLX routes to this subscription's parking queue alone. ``reject``:
    ``reject-publish``, the publish is nacked and the outbox retries it (holds back the
    other subscribers of those routing keys while full). docs/stream.md explains the choice.
    """
    p = settings.queue_name
    exchange = Exchange(p(SIGNAL_EXCHANGE), type="topic", durable=True)
    name = p(spec.name)
    args: dict[str, Any] = {
        "x-queue-type": "quorum", "x-dead-letter-exchange": p(SIGNAL_DLX),
        "x-max-length": spec.max_length, "x-delivery-limit": SUBSCRIPTION_DELIVERY_LIMIT}
    if spec.overflow == "reject":
        args.update({"x-overflow": "reject-publish", "x-dead-letter-strategy": "at-least-once"})
    else:  # RabbitMQ dead-letters drop-head overflow at most once (no at-least-once for it)
        args.update({"x-overflow": "drop-head", "x-dead-letter-strategy": "at-most-once"})
    queue = Queue(name, durable=True, auto_delete=False, queue_arguments=args, bindings=[
        binding(exchange, routing_key=rk) for rk in binding_keys(spec)])
    if spec.overflow != "park":
        return queue, None
    dlx = Exchange(p(SIGNAL_DLX), type="headers", durable=True)
    parking = Queue(parking_queue_name(name), durable=True, auto_delete=False, queue_arguments={
        "x-queue-type": "quorum", "x-max-length": spec.max_length * PARKING_FACTOR,
        "x-overflow": "drop-head"}, bindings=[binding(dlx, arguments={
            "x-match": "all-with-x", "x-first-death-reason": "maxlen",
            "x-first-death-queue": name})])
    return queue, parking


def signal_topology(settings: Settings) -> tuple[Exchange, Exchange, Queue]:
    """The signal stream's exchange, its dead-letter exchange and ``ubi.signals.dlq``."""
    p = settings.queue_name
    exchange = Exchange(p(SIGNAL_EXCHANGE), type="topic", durable=True)
    dlx = Exchange(p(SIGNAL_DLX), type="headers", durable=True)
    dlq = Queue(p(SIGNAL_DLQ), durable=True, auto_delete=False,
                queue_arguments={"x-queue-type": "quorum"},
                bindings=[binding(dlx, arguments={"x-match": "all-with-x",
                                                  "x-first-death-reason": reason})
                          for reason in DLQ_REASONS])
    return exchange, dlx, dlq


def declare_subscription(channel: Any, settings: Settings, spec: SubscriptionSpec
                         ) -> list[str]:
    """Declare one subscription's queues and bindings (idempotent); their names."""
    names = []
    for queue in subscription_queues(settings, spec):
        if queue is not None:
            queue.bind(channel).declare()
            names.append(queue.name)
    return names


class QueueNotEmpty(RuntimeError):
    """A subscription queue still holds messages (and deleting was not forced)."""


def delete_subscription(settings: Settings, name: str, *, if_empty: bool = True) -> int:
    """Delete a subscription's queue and parking queue; the messages they held. With
    ``if_empty``, refuse (``QueueNotEmpty``) while the queue holds ready messages (quorum
    queues do not support ``if-empty`` on delete, so it is checked just before)."""
    queue = settings.queue_name(name)
    removed = 0
    with Connection(settings.broker_url,
                    connect_timeout=settings.broker_connect_timeout) as conn:
        for target in (queue, parking_queue_name(queue)):
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(target, passive=True)
                if if_empty and target == queue and count:
                    raise QueueNotEmpty(f"{target} holds {count} messages")
                removed += int(channel.queue_delete(target) or 0)
            except NotFound:
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    return removed


def declare_topology(app: Celery | None = None, settings: Settings | None = None,
                     connection: Connection | None = None,
                     subscriptions: list[SubscriptionSpec] | None = None) -> dict[str, Any]:
    """Declare every exchange and queue UBI relies on; idempotent. Returns what was declared.

    ``subscriptions``: the stream's subscriptions; by default the ``stream_subscriptions``
    rows of the settings' database."""
    import celeryconfig

    settings = settings or get_settings()
    problem = None
    if subscriptions is None:
        try:
            subscriptions = load_subscriptions(settings)
        except Exception as exc:  # a worker still starts: the deploy step declared them
            problem = f"subscriptions not declared: {type(exc).__name__}: {exc}"[:500]
            logging.getLogger("ubi.broker").warning("%s", problem)
            subscriptions = []
    own = connection is None
    if connection is None:
        connection = Connection(settings.broker_url,
                                connect_timeout=settings.broker_connect_timeout)
    declared: dict[str, Any] = {"exchanges": [], "queues": []}
    if problem:
        declared["subscriptions_error"] = problem
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
            stream = declare_stream(channel, settings, subscriptions)
            declared["exchanges"] += stream["exchanges"]
            declared["queues"] += stream["queues"]
        finally:
            channel.close()
    finally:
        if own:
            connection.release()
    return declared


def declare_stream(channel: Any, settings: Settings, subscriptions: list[SubscriptionSpec]
                   ) -> dict[str, list[str]]:
    """The signal stream's part of the topology: exchange, DLX, DLQ, the subscriptions."""
    exchange, dlx, dlq = signal_topology(settings)
    for ex in (exchange, dlx):
        ex.bind(channel).declare()
    dlq.bind(channel).declare()
    queues = [dlq.name]
    for spec in subscriptions:
        queues += declare_subscription(channel, settings, spec)
    return {"exchanges": [exchange.name, dlx.name], "queues": queues}


def load_subscriptions(settings: Settings) -> list[SubscriptionSpec]:
    """The subscriptions configured in the settings' database (``ubi subscriptions``)."""
    import sqlalchemy as sa

    from ubi.models import StreamSubscription
    from ubi.models.session import session_scope

    with session_scope(settings) as session:
        rows = session.execute(sa.select(StreamSubscription).order_by(
            StreamSubscription.name)).scalars()
        return [spec_of(row) for row in rows]


def spec_of(row: Any) -> SubscriptionSpec:
    """A ``StreamSubscription`` row as the spec the topology is declared from."""
    return SubscriptionSpec(
        name=row.name, tenants=tuple(row.tenants), actor_scopes=tuple(row.actor_scopes),
        dimensions=tuple(row.dimensions), signal_types=tuple(row.signal_types),
        signal_classes=tuple(row.signal_classes), min_severity=row.min_severity,
        overflow=row.overflow, max_length=row.max_length)


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


class DeadLetters(ABC):
    """One dead-letter queue read and re-driven the same way, whatever dies into it (the task
    DLQ, ``ubi.signals.dlq``, a parking queue).

    Reading takes messages without acknowledging them and closes the channel, which returns
    them to the queue. A re-drive publishes a copy with confirms and ``mandatory`` and
    acknowledges the dead-letter copy only after the broker confirmed, so a failure leaves the
    message where it was; the kind of queue decides where the copy goes (:meth:`republish`).
    """

    def __init__(self, settings: Settings | None, queue: str):
        self.settings = settings or get_settings()
        self.queue_name = self.settings.queue_name(queue)

    def connection(self) -> Connection:
        return Connection(self.settings.broker_url,
                          connect_timeout=self.settings.broker_connect_timeout,
                          transport_options={"confirm_publish": True})

    def peek(self, limit: int) -> list[Any]:
        """Up to ``limit`` raw messages from the head, all left in the queue."""
        found: list[Any] = []
        with self.connection() as conn:
            channel = conn.channel()
            try:
                for _ in range(limit):
                    raw = channel.basic_get(self.queue_name, no_ack=False)
                    if raw is None:
                        break
                    found.append(raw)
            finally:
                channel.close()  # unacknowledged messages return to the queue
        return found

    def redrive(self, chosen: Callable[[Any], str | None], *, one: bool,
                limit: int | None = None) -> list[str]:
        """Re-drive the messages ``chosen`` names (it returns their id, or None to leave one),
        the first only when ``one``; the ids re-driven."""
        done: list[str] = []
        with self.connection() as conn:
            channel = conn.channel()
            publish = conn.channel()
            try:
                while limit is None or len(done) < limit:
                    raw = channel.basic_get(self.queue_name, no_ack=False)
                    if raw is None:
                        break
                    name = chosen(raw)
                    if name is None:
                        continue  # left unacknowledged: returns to the queue on close
                    self.republish(publish, raw)  # py-amqp waits for the confirm
                    channel.basic_ack(raw.delivery_info["delivery_tag"])
                    done.append(name)
                    if one:
                        break
            finally:
                publish.close()
                channel.close()
        return done

    @abstractmethod
    def republish(self, channel: Any, raw: Any) -> None:
        """Publish the copy of ``raw`` that goes back (each kind knows where it came from)."""

    def purge(self) -> int:
        with self.connection() as conn:
            channel = conn.channel()
            try:
                return int(channel.queue_purge(self.queue_name) or 0)
            finally:
                channel.close()

    def depth(self) -> int:
        with self.connection() as conn:
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(self.queue_name, passive=True)
                return int(count)
            finally:
                channel.close()
