"""Tasks of the ``baselines`` queue: the nightly recompute, one task per tenant (sharded so a
large tenant never holds up the others)."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import baselines, freshness
from ubi.tasks.base import UbiTask

#: A tenant's nightly task is useless once the next night's is due.
SHARD_EXPIRES_SECONDS = 20 * 3600


@app.task(base=UbiTask, bind=True, name="ubi.tasks.baselines.recompute_all")
def recompute_all(self: UbiTask) -> int:
    """Fan out one recompute task per tenant."""
    tenants = freshness.tenants(self.session)
    for tenant_id in tenants:
        recompute_tenant.apply_async(kwargs={"tenant_id": tenant_id},
                                     expires=SHARD_EXPIRES_SECONDS)
    return len(tenants)


@app.task(base=UbiTask, bind=True, name="ubi.tasks.baselines.recompute_tenant")
def recompute_tenant(self: UbiTask, *, tenant_id: str) -> dict[str, Any]:
    outcome = baselines.recompute_baselines(self.session, tenant_id)
    if outcome.busy:  # detection is refreshing this tenant's baselines right now
        recompute_tenant.apply_async(kwargs={"tenant_id": tenant_id}, countdown=60,
                                     expires=SHARD_EXPIRES_SECONDS)
        return {"tenant_id": tenant_id, "busy": True}
    return {"tenant_id": tenant_id, "actors": outcome.actors, "baselines": outcome.baselines}
