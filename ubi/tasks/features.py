"""Tasks of the ``features`` queue."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import features, followups
from ubi.tasks import names
from ubi.tasks.base import UbiTask

#: Seconds before looking again when another run holds the tenant.
BUSY_RETRY_SECONDS = 1.0


@app.task(base=UbiTask, bind=True, name=names.COMPUTE_FEATURES, followup_key="features:{tenant_id}")
def compute_features(self: UbiTask, *, tenant_id: str,
                     correlation_id: str | None = None) -> dict[str, Any]:
    """Features of the tenant's dirty (actor, day) pairs; hands closed days to detection."""
    outcome = features.compute_tenant_features(self.session, tenant_id)
    kwargs = {"tenant_id": tenant_id, "correlation_id": correlation_id}
    if outcome.busy or outcome.dirty >= features.CLAIM_LIMIT:
        # Busy: the running one computes only what it read, so look again once it is done.
        # More than one run's worth: go on at once. Either way one pending run per tenant.
        followups.enqueue_followup(
            self.session, names.COMPUTE_FEATURES, tenant_id=tenant_id, kwargs=kwargs,
            dedupe_key=f"features:{tenant_id}", correlation_id=correlation_id,
            delay_seconds=BUSY_RETRY_SECONDS if outcome.busy else None)
    if outcome.busy:
        return {"tenant_id": tenant_id, "busy": True}
    return {"tenant_id": tenant_id, "dirty": outcome.dirty, "rows": outcome.rows,
            "remaining": outcome.remaining, "detect": outcome.detect_enqueued}
