"""Structured JSON logs carrying the ids of ``ubi.observability.context`` and, inside a span,
the trace's (``ubi.observability.tracing``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from ubi.observability import context, tracing
from ubi.settings import get_settings

_configured = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context.current())
        # Inside a span: its ids, so a log line leads to its trace and back.
        entry.update(tracing.log_ids())
        extra = getattr(record, "ubi", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={v}" for k, v in
                       {**context.current(), **tracing.log_ids()}.items())
        base = super().format(record)
        return f"{base} {ids}" if ids else base


def configure_logging(force: bool = False) -> None:
    """Install the project's handler on the root logger once per process."""
    global _configured
    if _configured and not force:
        return
    settings = get_settings()
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("amqp", "kombu", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _configured = True
