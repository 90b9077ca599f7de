"""Maintenance queue: partitions, outbox drains, broker probes."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import partitions
from ubi.tasks.base import PermanentTaskError, UbiTask, dispatch_followups


@app.task(base=UbiTask, bind=True, name="ubi.tasks.maintenance.ensure_event_partitions",
          max_retries=3)
def ensure_event_partitions(self: UbiTask, days_ahead: int = 3) -> int:
    """Create the daily ``events`` partitions for today and the next days (PostgreSQL)."""
    return partitions.ensure_upcoming_partitions(self.session, days_ahead=days_ahead)


@app.task(base=UbiTask, bind=True, name="ubi.tasks.maintenance.drain_task_outbox",
          max_retries=0)
def drain_task_outbox(self: UbiTask) -> int:
    """Send follow-up tasks that were committed but not dispatched (a crash, a broker blip)."""
    return dispatch_followups(self.app, older_than_seconds=2.0)


@app.task(base=UbiTask, bind=True, name="ubi.tasks.maintenance.probe", max_retries=0)
def probe(self: UbiTask, fail: bool = False, note: str = "") -> dict[str, Any]:
    """Canary used by ``ubi broker check`` and the test suite: succeeds, or fails permanently
    so the message must reach ``ubi.tasks.dlq`` (proves the dead-letter wiring)."""
    if fail:
        raise PermanentTaskError(f"probe asked to fail ({note})")
    return {"ok": True, "note": note}
