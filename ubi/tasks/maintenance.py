"""Maintenance queue: partitions, outbox drains, broker probes."""

from __future__ import annotations

import threading
from typing import Any

from ubi.celery_app import app
from ubi.integrations.governance import GovernanceClient
from ubi.services import batches, deletions, followups, freshness, maintenance, retention
from ubi.settings import get_settings
from ubi.store import partitions
from ubi.tasks import names
from ubi.tasks.base import PermanentTaskError, UbiTask, dispatch_followups


@app.task(base=UbiTask, bind=True, name=names.ENSURE_EVENT_PARTITIONS)
def ensure_event_partitions(self: UbiTask, days_ahead: int = 3) -> int:
    """Create the daily ``events`` partitions for today and the next days (PostgreSQL)."""
    return partitions.ensure_upcoming_partitions(self.session, days_ahead=days_ahead)


@app.task(base=UbiTask, bind=True, name=names.DRAIN_TASK_OUTBOX)
def drain_task_outbox(self: UbiTask) -> int:
    """Send follow-up tasks that were committed but not dispatched (a crash, a broker blip)."""
    return dispatch_followups(self.app, older_than_seconds=2.0)


@app.task(base=UbiTask, bind=True, name=names.PROBE)
def probe(self: UbiTask, fail: bool = False, note: str = "") -> dict[str, Any]:
    """Canary of the test suite and of an operator checking a deployment (``celery -A
    ubi.celery_app call ubi.tasks.maintenance.probe``): succeeds, or fails permanently so the
    message must reach ``ubi.tasks.dlq`` (proves the dead-letter wiring)."""
    if fail:
        raise PermanentTaskError(f"probe asked to fail ({note})")
    return {"ok": True, "note": note}


@app.task(base=UbiTask, bind=True, name=names.TRACK_STALENESS)
def track_staleness(self: UbiTask) -> dict[str, Any]:
    """Open, extend or close ingestion gaps of every tenant (SPEC §9)."""
    reports = [freshness.track_tenant(self.session, t) for t in freshness.tenants(self.session)]
    return {"tenants": len(reports), "in_gap": sum(r.gap_open for r in reports)}


@app.task(base=UbiTask, bind=True, name=names.CLOSE_DAYS)
def close_days(self: UbiTask) -> list[str]:
    """Day close: hand every tenant with a closed, unevaluated day to detection (through the
    task outbox: one pending detect run per tenant)."""
    due = [t for t in freshness.tenants(self.session)
           if freshness.detection_due(self.session, t)]
    for tenant_id in due:
        followups.enqueue_followup(self.session, names.DETECT_TENANT, tenant_id=tenant_id,
                                   kwargs={"tenant_id": tenant_id, "correlation_id": None},
                                   dedupe_key=f"detect:{tenant_id}")
    return due


@app.task(base=UbiTask, bind=True, name=names.RESOLVE_ANOMALIES)
def resolve_anomalies(self: UbiTask) -> int:
    """Resolve anomalies back within 1 std for ``resolution_hours`` (SPEC §5.3)."""
    return sum(maintenance.resolve_anomalies(self.session, t)
               for t in freshness.tenants(self.session))


#: Seconds before trying a deletion again when the tenant's features or detect step runs.
DELETION_BUSY_SECONDS = 5


class RunDeletionTask(UbiTask):
    def dead_lettered(self, reason: str, kwargs: dict[str, Any]) -> None:
        deletions.mark_failed(str(kwargs.get("job_id")), reason)


@app.task(base=RunDeletionTask, bind=True, name=names.RUN_DELETION,
          followup_key="deletion:{job_id}")
def run_deletion(self: UbiTask, *, job_id: str) -> dict[str, Any]:
    """Execute a privacy deletion job (its state is in ``deletion_jobs``: a redelivered or
    re-sent message runs a job left ``running`` again, and finds a ``done`` one done)."""
    try:
        counts = deletions.run_deletion(job_id, session=self.session)
    except deletions.DeletionBusy as busy:
        followups.enqueue_followup(self.session, names.RUN_DELETION, tenant_id=busy.tenant_id,
                                   kwargs={"job_id": job_id}, dedupe_key=f"deletion:{job_id}",
                                   correlation_id=job_id, delay_seconds=DELETION_BUSY_SECONDS)
        return {"job_id": job_id, "busy": True}
    except LookupError as exc:
        raise PermanentTaskError(str(exc)) from exc
    return {"job_id": job_id, "counts": counts}


_governance_clients: dict[str, GovernanceClient] = {}
_governance_lock = threading.Lock()


def _governance(url: str) -> GovernanceClient:
    with _governance_lock:  # one connection pool per worker process and URL
        client = _governance_clients.get(url)
        if client is None:
            client = _governance_clients[url] = GovernanceClient(get_settings())
        return client


@app.task(base=UbiTask, bind=True, name=names.APPLY_RETENTION)
def apply_retention(self: UbiTask) -> dict[str, Any]:
    """Daily retention (SPEC §8): ask Data Governance per tenant and month of stored data and
    request the deletions it answers (without ``UBI_GOVERNANCE_URL``: ``retention_days``)."""
    url = get_settings().governance_url
    evaluate = _governance(url).evaluate if url else None
    return retention.run_retention(self.session, evaluate).summary()


@app.task(base=UbiTask, bind=True, name=names.EXPIRE_UNQUEUED_BATCHES)
def expire_unqueued_batches(self: UbiTask) -> dict[str, int]:
    """Batches the web committed but never published are marked failed (SPEC §9)."""
    return batches.expire_unqueued_batches(self.session)
