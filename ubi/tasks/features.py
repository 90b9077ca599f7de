"""Tasks of the ``features`` queue."""

from __future__ import annotations

import logging
from typing import Any

import redis

from ubi.celery_app import app
from ubi.integrations.dependencies import redis_client
from ubi.services import features
from ubi.settings import get_settings
from ubi.tasks.base import UbiTask

log = logging.getLogger("ubi.features")

#: Seconds before looking again when another run holds the tenant.
BUSY_RETRY_SECONDS = 1.0


@app.task(base=UbiTask, bind=True, name="ubi.tasks.features.compute_features", max_retries=8)
def compute_features(self: UbiTask, *, tenant_id: str,
                     correlation_id: str | None = None) -> dict[str, Any]:
    """Features of the tenant's dirty (actor, day) pairs; hands closed days to detection."""
    outcome = features.compute_tenant_features(self.session, tenant_id)
    if outcome.busy:
        # The running one computes only what it read: look again once it is done. One such
        # look per tenant is enough, however many batches arrived meanwhile.
        if _first_look(tenant_id):
            compute_features.apply_async(
                kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id},
                countdown=BUSY_RETRY_SECONDS)
        return {"tenant_id": tenant_id, "busy": True}
    if outcome.dirty >= features.CLAIM_LIMIT:  # more than one run's worth: go on at once
        compute_features.apply_async(kwargs={"tenant_id": tenant_id,
                                             "correlation_id": correlation_id})
    return {"tenant_id": tenant_id, "dirty": outcome.dirty, "rows": outcome.rows,
            "remaining": outcome.remaining, "detect": outcome.detect_enqueued}


def _first_look(tenant_id: str) -> bool:
    """True unless a delayed look at this tenant is already scheduled (Redis ``SET NX``)."""
    settings = get_settings()
    client = redis_client(settings)
    if client is None:
        return True
    key = f"{settings.queue_prefix}ubi:features-look:{tenant_id}"
    try:
        return bool(client.set(key, "1", nx=True, px=int(BUSY_RETRY_SECONDS * 1000)))
    except redis.RedisError as exc:  # without the dedupe, an extra look is harmless
        log.warning("features look dedupe unavailable", extra={"ubi": {"error": str(exc)}})
        return True
