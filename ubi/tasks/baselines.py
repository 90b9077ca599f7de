"""Tasks of the ``baselines`` queue: the nightly recompute, one task per tenant (sharded so a
large tenant never holds up the others)."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import baselines, features, freshness
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
    """The nightly full recompute of one tenant: features of the days events arrived for
    after ``late_event_days`` (SPEC §3), then every baseline."""
    feats = features.recompute_features(self.session, tenant_id)
    outcome = baselines.recompute_baselines(self.session, tenant_id)
    if outcome.busy or feats.busy:  # detection or the features step holds the tenant
        recompute_tenant.apply_async(kwargs={"tenant_id": tenant_id}, countdown=60,
                                     expires=SHARD_EXPIRES_SECONDS)
        return {"tenant_id": tenant_id, "busy": True}
    return {"tenant_id": tenant_id, "actors": outcome.actors, "baselines": outcome.baselines,
            "features": feats.rows}
