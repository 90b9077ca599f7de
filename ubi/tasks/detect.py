"""Tasks of the ``detect`` queue."""

from __future__ import annotations

from datetime import date
from typing import Any

from ubi.celery_app import app
from ubi.services import detection, followups
from ubi.tasks import names
from ubi.tasks.base import UbiTask

#: Seconds before looking again when another run holds the tenant.
BUSY_RETRY_SECONDS = 3
#: Seconds before looking again while a backfill's batches are still being stored.
WAIT_RETRY_SECONDS = 5


@app.task(base=UbiTask, bind=True, name=names.DETECT_TENANT, followup_key="detect:{tenant_id}")
def detect_tenant(self: UbiTask, *, tenant_id: str, correlation_id: str | None = None,
                  through: str | None = None) -> dict[str, Any]:
    """Anomalies, scores and signals for the tenant's closed days not evaluated yet."""
    outcome = detection.detect_tenant(
        self.session, tenant_id, correlation_id=correlation_id,
        through=date.fromisoformat(through) if through else None)
    if outcome.busy or outcome.waiting:
        # Another run holds the tenant and may not cover the days that closed since it began,
        # or a backfill is still being stored (the batch stored last owes a run, but one
        # that stores nothing new does not): look again shortly (a new run, not a retry:
        # neither is a failure), once however many runs found it so.
        followups.enqueue_followup(
            self.session, names.DETECT_TENANT, tenant_id=tenant_id,
            kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id,
                    "through": through},
            dedupe_key=f"detect:{tenant_id}", correlation_id=correlation_id,
            delay_seconds=BUSY_RETRY_SECONDS if outcome.busy else WAIT_RETRY_SECONDS)
        return {"tenant_id": tenant_id, "busy" if outcome.busy else "waiting": True}
    return {"tenant_id": tenant_id, "from": str(outcome.evaluated_from),
            "through": str(outcome.evaluated_through), "signals": outcome.signal_versions,
            "anomalies": outcome.anomalies_created}
