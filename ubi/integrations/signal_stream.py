"""Publishing signals to the ``ubi.behavioural_signals`` topic exchange (SPEC §12) with kombu.

Every message is persistent JSON with ``message_id = <signal_id>:<version>`` and the headers
``tenant_id``, ``correlation_id`` and ``schema_version``. Publishing uses publisher confirms
and ``mandatory=True``: a confirm alone does not catch a message that no queue took (a missing
binding), a returned message does; and a bounded subscription queue that is full rejects the
publish (``x-overflow: reject-publish``), which surfaces as a nack. With no ``basic_return``
handler registered, py-amqp raises the return while it waits for the confirm, so both come
back here as exceptions. Producers come from kombu's pool with ``block=True`` and a timeout.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import ChannelError, MessageNacked
from kombu import Connection, Exchange, pools
from kombu.exceptions import OperationalError

from ubi.integrations.broker import SIGNAL_EXCHANGE
from ubi.settings import Settings, get_settings

POOL_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class PublishResult:
    ok: bool
    error: str | None = None


class SignalPublisher:
    """Publishes outbox rows; one instance per process (kombu pools are per connection)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.exchange = Exchange(self.settings.queue_name(SIGNAL_EXCHANGE), type="topic",
                                 durable=True)
        self._connection = Connection(self.settings.broker_url,
                                      connect_timeout=self.settings.broker_connect_timeout,
                                      transport_options={"confirm_publish": True})

    def publish(self, *, message_id: str, routing_key: str, payload: dict[str, Any],
                headers: dict[str, Any]) -> PublishResult:
        """Publish one message; ``ok`` only once the broker confirmed and nothing returned."""
        try:
            with pools.producers[self._connection].acquire(
                    block=True, timeout=POOL_TIMEOUT_SECONDS) as producer:
                producer.publish(
                    payload, exchange=self.exchange, routing_key=routing_key,
                    serializer="json", delivery_mode=2, mandatory=True,
                    message_id=message_id, headers=headers, declare=[self.exchange],
                    retry=True, retry_policy={"max_retries": 1, "interval_start": 0.2,
                                              "interval_step": 0.5, "interval_max": 1})
        except (OperationalError, OSError, ConnectionError, TimeoutError) as exc:
            return PublishResult(False, f"broker: {type(exc).__name__}: {exc}"[:500])
        except (MessageNacked, ChannelError) as exc:
            # NO_ROUTE (returned, nothing bound) or a nack (a full bounded queue).
            return PublishResult(False, f"{type(exc).__name__}: {exc}"[:500])
        return PublishResult(True)

    def close(self) -> None:
        self._connection.release()


_publishers: dict[str, SignalPublisher] = {}
_publishers_lock = threading.Lock()


def publisher(settings: Settings | None = None) -> SignalPublisher:
    settings = settings or get_settings()
    key = f"{settings.broker_url}|{settings.queue_prefix}"
    with _publishers_lock:
        pub = _publishers.get(key)
        if pub is None:
            pub = _publishers[key] = SignalPublisher(settings)
        return pub
