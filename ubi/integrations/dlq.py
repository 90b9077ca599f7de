"""The task dead-letter queue: read, re-drive and purge (``ubi dlq``; SPEC §14).

Listing reads messages without acknowledging them and closes the channel, which returns them
to the queue in order. A re-drive republishes the unchanged message to the exchange and routing
key of its first ``x-death`` entry, with publisher confirms and ``mandatory``, and acknowledges
the dead-letter copy only after the broker confirmed; it counts re-drives in a header and
refuses task names this deployment does not know.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kombu import Connection, Exchange, Producer

from ubi.settings import Settings, get_settings

REDRIVE_HEADER = "x-ubi-redrives"


@dataclass
class DeadLetter:
    task_id: str
    task_name: str
    args_summary: str
    attempts: int
    reason: str
    original_queue: str
    original_exchange: str
    original_routing_key: str
    first_failure: datetime | None
    last_failure: datetime | None
    redrives: int
    exception: str | None = None
    headers: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "headers"}
        for k in ("first_failure", "last_failure"):
            if d[k] is not None:
                d[k] = d[k].isoformat()
        return d


def _args_summary(headers: dict[str, Any]) -> str:
    # Only headers UBI summarised are printed: an older message's argsrepr may hold a batch.
    from ubi.tasks.summaries import REDACTED_HEADER

    if not headers.get(REDACTED_HEADER):
        return "(arguments not shown: the message predates redacted summaries)"
    return f"args={headers.get('argsrepr', '?')} kwargs={headers.get('kwargsrepr', '?')}"[:500]


def _parse(message: Any) -> DeadLetter:
    headers = dict(message.headers or {})
    deaths = headers.get("x-death") or []
    first = deaths[-1] if deaths else {}
    latest = deaths[0] if deaths else {}
    routing_keys = first.get("routing-keys") or [message.delivery_info.get("routing_key", "")]
    times = [d.get("time") for d in deaths if d.get("time") is not None]
    attempts = sum(int(d.get("count", 1)) for d in deaths) + int(headers.get("retries") or 0)
    return DeadLetter(
        task_id=str(headers.get("id") or message.properties.get("correlation_id") or ""),
        task_name=str(headers.get("task") or "?"),
        args_summary=_args_summary(headers),
        attempts=max(attempts, 1),
        reason=str(latest.get("reason", "?")),
        original_queue=str(first.get("queue", "?")),
        original_exchange=str(first.get("exchange", "")),
        original_routing_key=str(routing_keys[0] if routing_keys else ""),
        first_failure=min(times) if times else None,
        last_failure=max(times) if times else None,
        redrives=int(headers.get(REDRIVE_HEADER) or 0),
        headers=headers,
    )


class DeadLetterQueue:
    """Operations on ``<prefix>ubi.tasks.dlq``."""

    def __init__(self, settings: Settings | None = None, known_tasks: set[str] | None = None,
                 exception_lookup: Any = None):
        self.settings = settings or get_settings()
        self.queue_name = self.settings.queue_name("ubi.tasks.dlq")
        self.known_tasks = known_tasks
        self.exception_lookup = exception_lookup

    def _connection(self) -> Connection:
        return Connection(self.settings.broker_url,
                          connect_timeout=self.settings.broker_connect_timeout,
                          transport_options={"confirm_publish": True})

    def list(self, limit: int = 100) -> list[DeadLetter]:
        items: list[DeadLetter] = []
        with self._connection() as conn:
            channel = conn.channel()
            try:
                for _ in range(limit):
                    message = channel.basic_get(self.queue_name, no_ack=False)
                    if message is None:
                        break
                    items.append(self._with_exception(_parse(_Wrapped(message))))
            finally:
                channel.close()  # unacknowledged messages return to the queue
        return items

    def show(self, task_id: str) -> DeadLetter | None:
        return next((d for d in self.list(limit=10_000) if d.task_id == task_id), None)

    def retry(self, task_id: str | None = None, *,
              all_messages: bool = False) -> builtins.list[str]:
        """Re-drive one message (by task id) or all; returns the task ids re-driven."""
        if not all_messages and not task_id:
            raise ValueError("name a task id or ask for all")
        redriven: list[str] = []
        with self._connection() as conn:
            channel = conn.channel()
            try:
                while True:
                    raw = channel.basic_get(self.queue_name, no_ack=False)
                    if raw is None:
                        break
                    message = _Wrapped(raw)
                    letter = _parse(message)
                    if not all_messages and letter.task_id != task_id:
                        continue  # left unacknowledged: returns to the queue on close
                    if self.known_tasks is not None and letter.task_name not in self.known_tasks:
                        raise ValueError(f"refusing to re-drive unknown task {letter.task_name!r}")
                    headers = dict(letter.headers)
                    headers.pop("x-death", None)
                    headers.pop("x-first-death-exchange", None)
                    headers.pop("x-first-death-queue", None)
                    headers.pop("x-first-death-reason", None)
                    headers.pop("x-delivery-count", None)
                    headers[REDRIVE_HEADER] = letter.redrives + 1
                    props = dict(raw.properties)
                    props.pop("application_headers", None)
                    producer = Producer(conn.channel())
                    producer.publish(
                        raw.body, exchange=Exchange(letter.original_exchange),
                        routing_key=letter.original_routing_key, headers=headers,
                        content_type=props.get("content_type"),
                        content_encoding=props.get("content_encoding"),
                        delivery_mode=2, mandatory=True, serializer=None,
                        correlation_id=props.get("correlation_id"),
                        reply_to=props.get("reply_to"), priority=props.get("priority"),
                        retry=False)
                    channel.basic_ack(raw.delivery_info["delivery_tag"])
                    redriven.append(letter.task_id)
                    if not all_messages:
                        break
            finally:
                channel.close()
        return redriven

    def purge(self) -> int:
        with self._connection() as conn:
            channel = conn.channel()
            try:
                return int(channel.queue_purge(self.queue_name) or 0)
            finally:
                channel.close()

    def depth(self) -> int:
        with self._connection() as conn:
            channel = conn.channel()
            try:
                _, count, _ = channel.queue_declare(self.queue_name, passive=True)
                return int(count)
            finally:
                channel.close()

    def _with_exception(self, letter: DeadLetter) -> DeadLetter:
        if self.exception_lookup is not None and letter.task_id:
            try:
                letter.exception = self.exception_lookup(letter.task_id)
            except Exception:  # the result backend is optional for reading the DLQ
                letter.exception = None
        return letter


class _Wrapped:
    """Uniform view over a py-amqp message for ``_parse``."""

    def __init__(self, raw: Any):
        self.headers = raw.properties.get("application_headers") or raw.headers or {}
        self.properties = raw.properties
        self.delivery_info = raw.delivery_info
        self.body = raw.body


def to_json(letters: list[DeadLetter]) -> str:
    return json.dumps([d.as_dict() for d in letters], indent=2, default=str)
