"""Tasks of the ``baselines`` queue: the nightly recompute, one task per tenant (sharded so a
large tenant never holds up the others), and ``ubi recompute`` of a range of days."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from celery import states
from celery.backends.base import DisabledBackend

from ubi.celery_app import app
from ubi.services import baselines, features, followups, freshness, recompute
from ubi.tasks import names
from ubi.tasks.base import UbiTask

log = logging.getLogger("ubi.tasks")

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


#: Seconds before looking again when another run holds the tenant.
RANGE_BUSY_RETRY_SECONDS = 5


class RecomputeRangeTask(UbiTask):
    """Its outcome is stored in the result backend under the run's id (``run_id``, the id of
    the first message), after the commit: a busy look is a new message (through the outbox)
    with a new task id, and ``ubi recompute --wait`` waits for the run, not the message."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], einfo: Any) -> None:
        if status != states.SUCCESS or not isinstance(retval, dict) or retval.get("busy"):
            return
        run_id = kwargs.get("run_id")
        if run_id and not self.request.is_eager and not isinstance(self.backend,
                                                                   DisabledBackend):
            try:
                self.backend.store_result(run_id, retval, states.SUCCESS)
            except Exception as exc:  # committed: only the waiting CLI misses it
                log.warning("recompute result not stored: %s", exc)

    def dead_lettered(self, reason: str, kwargs: dict[str, Any]) -> None:
        run_id = kwargs.get("run_id")
        if run_id and not self.request.is_eager and not isinstance(self.backend,
                                                                   DisabledBackend):
            self.backend.mark_as_failure(run_id, RuntimeError(reason))


@app.task(base=RecomputeRangeTask, bind=True, name=names.RECOMPUTE_RANGE,
          followup_key="recompute:{run_id}")
def recompute_range(self: UbiTask, *, tenant_id: str, first_day: str | None = None,
                    last_day: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """``ubi recompute``: the tenant's features, scores, detection and baselines over a range
    of days, in that order (``services.recompute``)."""
    outcome = recompute.recompute_range(
        self.session, tenant_id,
        first_day=date.fromisoformat(first_day) if first_day else None,
        last_day=date.fromisoformat(last_day) if last_day else None)
    if outcome.busy:
        # A features or detect run holds the tenant: look again once it is done.
        followups.enqueue_followup(
            self.session, names.RECOMPUTE_RANGE, tenant_id=tenant_id,
            kwargs={"tenant_id": tenant_id, "first_day": first_day, "last_day": last_day,
                    "run_id": run_id},
            dedupe_key=f"recompute:{run_id}", correlation_id=run_id,
            delay_seconds=RANGE_BUSY_RETRY_SECONDS)
        return {"tenant_id": tenant_id, "run_id": run_id, "busy": True}
    return {"run_id": run_id, **outcome.as_dict()}
