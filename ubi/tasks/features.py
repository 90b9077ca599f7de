"""Tasks of the ``features`` queue."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import features
from ubi.tasks.base import UbiTask


@app.task(base=UbiTask, bind=True, name="ubi.tasks.features.compute_features", max_retries=8)
def compute_features(self: UbiTask, *, tenant_id: str,
                     correlation_id: str | None = None) -> dict[str, Any]:
    """Features of the tenant's dirty (actor, day) pairs; hands closed days to detection."""
    outcome = features.compute_tenant_features(self.session, tenant_id)
    return {"tenant_id": tenant_id, "dirty": outcome.dirty, "rows": outcome.rows,
            "detect": outcome.detect_enqueued}
