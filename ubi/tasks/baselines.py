"""Tasks of the ``baselines`` queue: the nightly recompute, one task per tenant (sharded so a
large tenant never holds up the others)."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.services import baselines, features, followups, freshness
from ubi.tasks import names
from ubi.tasks.base import UbiTask

#: Seconds before trying again when detection or the features step holds the tenant.
BUSY_RETRY_SECONDS = 60


def _owe_recompute(task: UbiTask, tenant_id: str, delay_seconds: float | None = None) -> None:
    # One pending recompute per tenant: a night whose run is still waiting adds nothing.
    followups.enqueue_followup(task.session, names.RECOMPUTE_TENANT, tenant_id=tenant_id,
                               kwargs={"tenant_id": tenant_id},
                               dedupe_key=f"baselines:{tenant_id}", delay_seconds=delay_seconds)


@app.task(base=UbiTask, bind=True, name=names.RECOMPUTE_ALL)
def recompute_all(self: UbiTask) -> int:
    """Fan out one recompute task per tenant (through the task outbox)."""
    tenants = freshness.tenants(self.session)
    for tenant_id in tenants:
        _owe_recompute(self, tenant_id)
    return len(tenants)


@app.task(base=UbiTask, bind=True, name=names.RECOMPUTE_TENANT,
          followup_key="baselines:{tenant_id}")
def recompute_tenant(self: UbiTask, *, tenant_id: str) -> dict[str, Any]:
    """The nightly full recompute of one tenant: features of the days events arrived for
    after ``late_event_days`` (SPEC §3), then every baseline."""
    feats = features.recompute_features(self.session, tenant_id)
    outcome = baselines.recompute_baselines(self.session, tenant_id)
    if outcome.busy or feats.busy:  # detection or the features step holds the tenant
        _owe_recompute(self, tenant_id, delay_seconds=BUSY_RETRY_SECONDS)
        return {"tenant_id": tenant_id, "busy": True}
    return {"tenant_id": tenant_id, "actors": outcome.actors, "baselines": outcome.baselines,
            "features": feats.rows}
