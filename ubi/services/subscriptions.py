"""Named subscriptions of the signal stream (SPEC §12): ``ubi subscriptions add|list|remove``.

A subscription is a row of ``stream_subscriptions`` and, on the broker, a durable queue bound
to ``ubi.behavioural_signals`` by its filters. Adding one writes the row and declares the
queue at once; every worker start and ``ubi broker declare`` declare all of them again. Queue
arguments (bound, overflow policy) are immutable on the broker, so a subscription is changed by
removing and adding it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from kombu import Connection
from sqlalchemy.orm import Session

from ubi import clock
from ubi.integrations import broker
from ubi.integrations.routing import SubscriptionSpec, binding_keys
from ubi.models import StreamSubscription
from ubi.settings import Settings, get_settings


class SubscriptionError(ValueError):
    """A subscription that cannot be added or removed, with the reason."""


def list_subscriptions(session: Session) -> list[SubscriptionSpec]:
    rows = session.execute(sa.select(StreamSubscription).order_by(StreamSubscription.name))
    return [broker.spec_of(row) for row in rows.scalars()]


def add_subscription(session: Session, spec: SubscriptionSpec, *,
                     settings: Settings | None = None, now: datetime | None = None
                     ) -> list[str]:
    """Store ``spec`` and declare its queues on the broker (committed before declaring, so a
    worker start in between declares it too). Returns the declared queue names."""
    settings = settings or get_settings()
    problems = spec.validate()
    if problems:
        raise SubscriptionError("; ".join(problems))
    if session.get(StreamSubscription, spec.name) is not None:
        raise SubscriptionError(f"subscription {spec.name!r} exists: remove it first "
                                "(its queue's arguments cannot change)")
    session.add(StreamSubscription(
        name=spec.name, tenants=list(spec.tenants), actor_scopes=list(spec.actor_scopes),
        dimensions=list(spec.dimensions), signal_types=list(spec.signal_types),
        signal_classes=list(spec.signal_classes), min_severity=spec.min_severity,
        overflow=spec.overflow, max_length=spec.max_length,
        created_at=now or clock.utcnow()))
    session.commit()
    with Connection(settings.broker_url,
                    connect_timeout=settings.broker_connect_timeout) as conn:
        channel = conn.channel()
        try:
            exchange, _, _ = broker.signal_topology(settings)
            exchange.bind(channel).declare()
            return broker.declare_subscription(channel, settings, spec)
        finally:
            channel.close()


def remove_subscription(session: Session, name: str, *, force: bool = False,
                        settings: Settings | None = None) -> int:
    """Delete the subscription's queues and its row; the number of messages dropped. Without
    ``force`` a queue that still holds messages is left alone (``SubscriptionError``)."""
    settings = settings or get_settings()
    row = session.get(StreamSubscription, name)
    if row is None:
        raise SubscriptionError(f"no subscription {name!r}")
    try:
        dropped = broker.delete_subscription(settings, name, if_empty=not force)
    except broker.QueueNotEmpty as exc:
        raise SubscriptionError(f"{name!r} still holds messages: consume them or use --force"
                                ) from exc
    session.delete(row)
    session.commit()
    return dropped


def describe(spec: SubscriptionSpec, settings: Settings | None = None,
             depths: dict[str, int] | None = None) -> dict[str, Any]:
    """A subscription as ``ubi subscriptions list --json`` prints it."""
    settings = settings or get_settings()
    queue = settings.queue_name(spec.name)
    out: dict[str, Any] = {
        "name": spec.name, "queue": queue, "tenants": list(spec.tenants),
        "actor_scopes": list(spec.actor_scopes), "dimensions": list(spec.dimensions),
        "signal_types": list(spec.signal_types), "signal_classes": list(spec.signal_classes),
        "min_severity": spec.min_severity, "overflow": spec.overflow,
        "max_length": spec.max_length, "bindings": binding_keys(spec)}
    if spec.overflow == "park":
        out["parking_queue"] = broker.parking_queue_name(queue)
    if depths is not None:
        out["depth"] = depths.get(queue)
        if spec.overflow == "park":
            out["parked"] = depths.get(broker.parking_queue_name(queue))
    return out


def queue_depths(settings: Settings, queues: list[str]) -> dict[str, int]:
    """Ready messages per queue (a queue that does not exist is left out)."""
    import amqp.exceptions

    depths: dict[str, int] = {}
    with Connection(settings.broker_url,
                    connect_timeout=settings.broker_connect_timeout) as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(queue, passive=True)
                depths[queue] = int(count)
            except amqp.exceptions.NotFound:
                pass
            finally:
                with contextlib.suppress(Exception):  # the broker closed it on NotFound
                    channel.close()
    return depths
