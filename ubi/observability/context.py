"""Request, correlation, tenant, batch and task ids carried through logs (SPEC §11)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

LOG_FIELDS = ("request_id", "correlation_id", "tenant_id", "batch_id", "task_id")
#: Added to a log line emitted inside a span (``tracing.log_ids``), next to the ids above.
TRACE_FIELDS = ("trace_id", "span_id")
_context: ContextVar[dict[str, Any] | None] = ContextVar("ubi_log_context", default=None)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


def bind(**values: Any) -> None:
    """Add ids to the current context (None values are ignored)."""
    ctx = current()
    ctx.update({k: v for k, v in values.items() if v is not None})
    _context.set(ctx)


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Ids bound for the duration of a block (a request, a task)."""
    ctx = current()
    ctx.update({k: v for k, v in values.items() if v is not None})
    token = _context.set(ctx)
    try:
        yield
    finally:
        _context.reset(token)


def clear() -> None:
    _context.set({})
