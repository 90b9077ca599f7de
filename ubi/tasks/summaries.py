"""What a task message says about its arguments where people and tools can read it.

Celery copies ``repr(args)`` and ``repr(kwargs)`` into every message's ``argsrepr`` /
``kwargsrepr`` headers, which Flower, task events and the DLQ listing show; an ingest message's
kwargs hold the whole batch, raw actor ids included. Before any task message is published,
those headers are replaced by a summary that names only identifiers of UBI's own (batch,
tenant, correlation and request ids, days) and the size of everything else, and the message is
marked so the DLQ listing knows its headers are safe to print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import signals

#: Header set on every message whose argsrepr/kwargsrepr are summaries.
REDACTED_HEADER = "x-ubi-redacted"
#: Keyword arguments whose values are UBI's own ids or dates, never personal data.
SHOWN = frozenset({"batch_id", "tenant_id", "correlation_id", "request_id", "job_id",
                   "through", "day", "evaluate_from", "from_day", "to_day", "received_at",
                   "task_name", "dedupe_key", "reason"})
_MAX_SHOWN = 80


def _size(value: Any) -> str:
    if isinstance(value, str | bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping | Sequence):
        return f"<{len(value)} items>"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"<{type(value).__name__}>"


def summarise(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` that name no personal data."""
    shown_args = ", ".join(_size(a) for a in args or ())
    parts = []
    for key, value in (kwargs or {}).items():
        if key in SHOWN and (value is None or isinstance(value, str | int)):
            text = repr(value)
            parts.append(f"{key}={text[:_MAX_SHOWN]}")
        else:
            parts.append(f"{key}={_size(value)}")
    return f"({shown_args})", "{" + ", ".join(parts) + "}"


@signals.before_task_publish.connect
def _redact_headers(body: Any = None, headers: dict[str, Any] | None = None,
                    **_: Any) -> None:
    if headers is None or "task" not in headers:
        return  # not a task message of protocol 2
    args, kwargs = (body[0], body[1]) if isinstance(body, tuple | list) and len(body) >= 2 \
        else ((), {})
    headers["argsrepr"], headers["kwargsrepr"] = summarise(args, kwargs)
    headers[REDACTED_HEADER] = 1
