"""Publishing signals to the ``ubi.behavioural_signals`` topic exchange (SPEC §12).

Every message is persistent JSON with ``message_id = <signal_id>:<version>`` and the headers
``tenant_id``, ``correlation_id`` and ``schema_version`` (the contract:
``ubi/schemas/signal_message.schema.json``, docs/stream.md). Publishing uses publisher
confirms and ``mandatory=True``: a confirm alone does not catch a message that no queue took
(a missing binding), a returned message does; a ``reject`` subscription that is full rejects
the publish, which comes back as a nack.

Confirms are pipelined: a batch is written to one channel in confirm mode with up to
``window`` messages unconfirmed, and the broker's acks (often ``multiple``) settle them. Waiting
for each confirm in turn measured about 1,200 messages/s here (docs/benchmarks.md). RabbitMQ
sends a message's ``basic.return`` before its ack, so a returned message is known to have
failed when its ack arrives. A message is ``ok`` only once acked and not returned; anything
unsettled when the connection fails or the confirm wait times out counts as failed (it may
have reached the queues: at-least-once, the outbox sends it again).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amqp import Message
from amqp.exceptions import AMQPError
from amqp.method_framing import frame_writer
from kombu import Connection, Exchange
from kombu.exceptions import OperationalError

from ubi.integrations.broker import SIGNAL_EXCHANGE
from ubi.settings import Settings, get_settings

#: Unconfirmed messages in flight per channel: enough to keep the broker busy while it
#: writes confirms (the benchmark levels off above a few hundred).
CONFIRM_WINDOW = 1000
#: Bytes of framed publishes collected before one socket write.
FLUSH_BYTES = 64 * 1024
#: Seconds without any confirm before the batch's unsettled messages count as failed.
CONFIRM_TIMEOUT_SECONDS = 15.0


class _FrameSink:
    """Where py-amqp's frame writer puts a publish's frames (it hands over a view of its own
    buffer, so the bytes are copied)."""

    def __init__(self, frames: bytearray):
        self.frames = frames

    def write(self, data: Any) -> None:
        self.frames += data


@dataclass(frozen=True)
class PublishResult:
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """One signal version as it goes on the wire; ``body`` is its JSON."""

    message_id: str
    routing_key: str
    body: bytes
    headers: dict[str, Any]


class SignalPublisher:
    """Publishes outbox rows; one instance per process, its calls serialised by a lock."""

    def __init__(self, settings: Settings | None = None, *, window: int = CONFIRM_WINDOW):
        self.settings = settings or get_settings()
        self.window = window
        self.exchange = Exchange(self.settings.queue_name(SIGNAL_EXCHANGE), type="topic",
                                 durable=True)
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._channel: Any = None
        self._next_tag = 1
        self._unsettled: OrderedDict[int, int] = OrderedDict()  # delivery tag -> index
        self._returned: dict[str, str] = {}  # message id -> why
        self._results: list[PublishResult | None] = []
        self._ids: list[str] = []
        self._frames = bytearray()
        self._buffered_writer: Any = None

    # -- the connection --

    def _open(self) -> Any:
        if self._channel is not None:
            return self._channel
        timeout = self.settings.broker_connect_timeout
        conn = Connection(self.settings.broker_url, connect_timeout=timeout,
                          transport_options={"write_timeout": CONFIRM_TIMEOUT_SECONDS})
        try:
            conn.connect()
            channel = conn.channel()
            self.exchange.bind(channel).declare()
            channel.confirm_select()
        except BaseException:
            conn.release()
            raise
        # Publishes are framed into a buffer and written FLUSH_BYTES at a time: one system
        # call per message was half the drain's time (py-amqp writes every frame at once).
        self._frames.clear()
        self._buffered_writer = frame_writer(conn.connection, _FrameSink(self._frames))
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._connection, self._channel, self._next_tag = conn, channel, 1
        return channel

    def _flush(self) -> None:
        if self._frames and self._channel is not None:
            data = bytes(self._frames)
            self._frames.clear()
            self._channel.connection.transport.write(data)

    def _reset(self) -> None:
        self._frames.clear()
        conn, self._connection, self._channel = self._connection, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a failed connection may not close cleanly
                conn.release()

    # -- broker callbacks (run inside drain_events) --

    def _settle(self, tag: int, multiple: bool, result: PublishResult) -> None:
        settled: list[int] = []
        if multiple:  # tags are in publish order: settle from the oldest up to ``tag``
            while self._unsettled and next(iter(self._unsettled)) <= tag:
                settled.append(self._unsettled.popitem(last=False)[1])
        elif tag in self._unsettled:
            settled.append(self._unsettled.pop(tag))
        for index in settled:
            why = self._returned.pop(self._ids[index], None)
            self._results[index] = PublishResult(False, why) if why and result.ok else result

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, PublishResult(True))

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, PublishResult(
            False, "MessageNacked: the broker refused it (a full reject-publish queue?)"))

    def _on_return(self, exc: Exception, exchange: str, routing_key: str,
                   message: Any) -> None:
        message_id = str(message.properties.get("message_id", ""))
        self._returned[message_id] = f"returned: {exc} (routing key {routing_key})"[:500]

    # -- publishing --

    def _wait(self, until_unsettled: int) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        while len(self._unsettled) > until_unsettled:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no confirm within {CONFIRM_TIMEOUT_SECONDS} s")
            before = len(self._unsettled)
            try:
                self._connection.drain_events(timeout=min(left, 1.0))
            except TimeoutError:  # socket.timeout: nothing arrived within the second
                continue
            if len(self._unsettled) < before:
                deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS

    def publish_batch(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        """Publish ``messages`` in order, confirms pipelined; one result per message."""
        if self.settings.embedded_broker:
            return self._publish_in_process(messages)
        with self._lock:
            reused = self._channel is not None
            results, broken = self._publish_once(messages)
            if broken and reused and not any(r.ok for r in results):
                # A connection idle since the last drain may have been closed by the broker
                # or a firewall: one try on a fresh one (a duplicate at worst).
                results, _ = self._publish_once(messages)
            return results

    def _publish_once(self, messages: Sequence[OutgoingMessage]
                      ) -> tuple[list[PublishResult], bool]:
        """Publish on the current connection; the results and whether the connection broke."""
        self._results = [None] * len(messages)
        self._ids = [m.message_id for m in messages]
        self._unsettled.clear()
        self._returned.clear()
        failure: str | None = None
        try:
            channel = self._open()
            amqp_conn = channel.connection
            plain, buffered = amqp_conn.frame_writer, self._buffered_writer
            for index, m in enumerate(messages):
                if len(self._unsettled) >= self.window:
                    self._flush()
                    self._wait(self.window // 2)
                amqp_conn.frame_writer = buffered
                try:
                    channel.basic_publish(
                        Message(m.body, content_type="application/json",
                                content_encoding="utf-8", delivery_mode=2,
                                message_id=m.message_id, application_headers=m.headers),
                        exchange=self.exchange.name, routing_key=m.routing_key,
                        mandatory=True)
                finally:
                    amqp_conn.frame_writer = plain
                self._unsettled[self._next_tag] = index
                self._next_tag += 1
                if len(self._frames) >= FLUSH_BYTES:
                    self._flush()
            self._flush()
            self._wait(0)
        except (OperationalError, OSError, ConnectionError, TimeoutError, AMQPError) as exc:
            failure = f"broker: {type(exc).__name__}: {exc}"[:500]
            self._reset()  # late confirms on this channel would name the wrong tags
        results = [r if r is not None else PublishResult(False, failure or "unconfirmed")
                   for r in self._results]
        self._unsettled.clear()
        self._results, self._ids = [], []
        return results, failure is not None

    def _publish_in_process(self, messages: Sequence[OutgoingMessage]) -> list[PublishResult]:
        # The embedded default (kombu's memory transport, no consumers): no confirms exist.
        with Connection(self.settings.broker_url) as conn:
            producer = conn.Producer()
            for m in messages:
                producer.publish(m.body, exchange=self.exchange, routing_key=m.routing_key,
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, message_id=m.message_id, headers=m.headers,
                                 declare=[self.exchange])
        return [PublishResult(True) for _ in messages]

    def publish(self, *, message_id: str, routing_key: str, payload: dict[str, Any],
                headers: dict[str, Any]) -> PublishResult:
        """Publish one message and wait for its confirm."""
        import orjson

        return self.publish_batch([OutgoingMessage(message_id, routing_key,
                                                   orjson.dumps(payload), headers)])[0]

    def close(self) -> None:
        with self._lock:
            self._reset()


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
