"""Tasks of the ``features`` queue."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import features
from ubi.tasks.base import UbiTask, look_again, task_started

#: Seconds before looking again when another run holds the tenant.
BUSY_RETRY_SECONDS = 1.0


@app.task(base=UbiTask, bind=True, name="ubi.tasks.features.compute_features")
def compute_features(self: UbiTask, *, tenant_id: str,
                     correlation_id: str | None = None) -> dict[str, Any]:
    """Features of the tenant's dirty (actor, day) pairs; hands closed days to detection."""
    task_started(f"features:{tenant_id}")  # before the dirty pairs are read
    outcome = features.compute_tenant_features(self.session, tenant_id)
    kwargs = {"tenant_id": tenant_id, "correlation_id": correlation_id}
    if outcome.busy:
        # The running one computes only what it read: look again once it is done.
        look_again(compute_features, key=f"features:{tenant_id}", kwargs=kwargs,
                   countdown=BUSY_RETRY_SECONDS)
        return {"tenant_id": tenant_id, "busy": True}
    if outcome.dirty >= features.CLAIM_LIMIT:  # more than one run's worth: go on at once
        compute_features.apply_async(kwargs=kwargs)
    return {"tenant_id": tenant_id, "dirty": outcome.dirty, "rows": outcome.rows,
            "remaining": outcome.remaining, "detect": outcome.detect_enqueued}
