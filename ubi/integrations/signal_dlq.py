"""The signal stream's dead letters (``ubi stream dlq``): ``ubi.signals.dlq`` (consumer
rejections, deliveries past the limit) and each ``park`` subscription's parking queue (its
overflow).

Listing reads without acknowledging and closes the channel, which returns the messages (a
quorum queue requeues them in no set order). A re-drive republishes the unchanged body and
properties to the queue the message died in alone (the default exchange with a ``BCC`` header
naming that queue, which keeps the original routing key), so the other subscribers do not get
it again; with confirms and ``mandatory``, acknowledging the dead-letter copy only after the
confirm. The death headers are dropped (a later death is recorded afresh) and re-drives are
counted in ``x-ubi-redrives``.
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass
from typing import Any

from amqp import Message

from ubi.integrations.broker import DEATH_HEADERS, REDRIVE_HEADER, SIGNAL_DLQ, DeadLetters
from ubi.settings import Settings


@dataclass
class SignalLetter:
    message_id: str
    tenant_id: str
    routing_key: str
    reason: str
    queue: str
    deaths: int
    redrives: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _letter(raw: Any) -> SignalLetter:
    headers = dict(raw.properties.get("application_headers") or {})
    deaths = headers.get("x-death") or []
    first = deaths[-1] if deaths else {}
    keys = first.get("routing-keys") or [raw.delivery_info.get("routing_key", "")]
    return SignalLetter(
        message_id=str(raw.properties.get("message_id") or ""),
        tenant_id=str(headers.get("tenant_id") or ""),
        routing_key=str(keys[0] if keys else ""),
        reason=str(headers.get("x-first-death-reason") or first.get("reason") or "?"),
        queue=str(headers.get("x-first-death-queue") or first.get("queue") or ""),
        deaths=sum(int(d.get("count", 1)) for d in deaths),
        redrives=int(headers.get(REDRIVE_HEADER) or 0))


class SignalDeadLetters(DeadLetters):
    """Operations on one dead-letter queue of the stream (by default ``ubi.signals.dlq``;
    ``queue`` names a parking queue, unprefixed)."""

    def __init__(self, settings: Settings | None = None, queue: str = SIGNAL_DLQ):
        super().__init__(settings, queue)

    def list(self, limit: int = 100) -> list[SignalLetter]:
        return [_letter(raw) for raw in self.peek(limit)]

    def retry(self, message_id: str | None = None, *, all_messages: bool = False,
              limit: int | None = None) -> builtins.list[str]:
        """Re-drive one letter (by message id) or all (at most ``limit``) to the queue each
        died in; the message ids re-driven."""
        if not all_messages and not message_id:
            raise ValueError("name a message id or ask for all")

        def chosen(raw: Any) -> str | None:
            letter = _letter(raw)
            if not all_messages and letter.message_id != message_id:
                return None
            if not letter.queue:
                raise ValueError(f"{letter.message_id}: no queue it died in")
            return letter.message_id

        return self.redrive(chosen, one=not all_messages, limit=limit)

    def republish(self, channel: Any, raw: Any) -> None:
        letter = _letter(raw)
        props = dict(raw.properties)
        headers = {k: v for k, v in (props.pop("application_headers", None)
                                     or {}).items() if k not in DEATH_HEADERS}
        headers[REDRIVE_HEADER] = letter.redrives + 1
        # The default exchange with BCC = that queue: it reaches that queue only, and
        # consumers still see the original routing key (RabbitMQ removes BCC).
        headers["BCC"] = [letter.queue]
        channel.basic_publish(Message(raw.body, application_headers=headers, **props),
                              exchange="", routing_key=letter.routing_key, mandatory=True)
