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

from amqp import Message

from ubi.integrations.broker import DEATH_HEADERS, REDRIVE_HEADER, DeadLetters
from ubi.settings import Settings


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


class DeadLetterQueue(DeadLetters):
    """Operations on ``<prefix>ubi.tasks.dlq``."""

    def __init__(self, settings: Settings | None = None, known_tasks: set[str] | None = None,
                 exception_lookup: Any = None):
        super().__init__(settings, "ubi.tasks.dlq")
        self.known_tasks = known_tasks
        self.exception_lookup = exception_lookup

    def list(self, limit: int = 100) -> list[DeadLetter]:
        return [self._with_exception(_parse(_Wrapped(raw))) for raw in self.peek(limit)]

    def show(self, task_id: str) -> DeadLetter | None:
        return next((d for d in self.list(limit=10_000) if d.task_id == task_id), None)

    def retry(self, task_id: str | None = None, *,
              all_messages: bool = False) -> builtins.list[str]:
        """Re-drive one message (by task id) or all; returns the task ids re-driven."""
        if not all_messages and not task_id:
            raise ValueError("name a task id or ask for all")

        def chosen(raw: Any) -> str | None:
            letter = _parse(_Wrapped(raw))
            if not all_messages and letter.task_id != task_id:
                return None
            if self.known_tasks is not None and letter.task_name not in self.known_tasks:
                raise ValueError(f"refusing to re-drive unknown task {letter.task_name!r}")
            return letter.task_id

        return self.redrive(chosen, one=not all_messages)

    def republish(self, channel: Any, raw: Any) -> None:
        # To the exchange and routing key of its first death, unchanged but for the headers.
        letter = _parse(_Wrapped(raw))
        headers = {k: v for k, v in letter.headers.items() if k not in DEATH_HEADERS}
        headers[REDRIVE_HEADER] = letter.redrives + 1
        props = {k: v for k, v in raw.properties.items() if k != "application_headers"}
        props["delivery_mode"] = 2
        channel.basic_publish(Message(raw.body, application_headers=headers, **props),
                              exchange=letter.original_exchange,
                              routing_key=letter.original_routing_key, mandatory=True)

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
