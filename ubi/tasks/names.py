"""Every task's name, in one place (issue 19): the task modules register under these, the
services name the follow-ups they owe with them, and beat schedules them. A name is
``ubi.tasks.<queue>.<function>``: the queue routing reads it (``celeryconfig.route_task``).
This module imports nothing, so the services can use it without importing Celery.
"""

from __future__ import annotations

INGEST_BATCH = "ubi.tasks.ingest.ingest_batch"
COMPUTE_FEATURES = "ubi.tasks.features.compute_features"
DETECT_TENANT = "ubi.tasks.detect.detect_tenant"
RECOMPUTE_ALL = "ubi.tasks.baselines.recompute_all"
RECOMPUTE_TENANT = "ubi.tasks.baselines.recompute_tenant"
RECOMPUTE_RANGE = "ubi.tasks.baselines.recompute_range"
DRAIN_SIGNAL_OUTBOX = "ubi.tasks.publish.drain_signal_outbox"
DELIVER_RECEIPTS = "ubi.tasks.receipts.deliver_receipts"
ENSURE_EVENT_PARTITIONS = "ubi.tasks.maintenance.ensure_event_partitions"
DRAIN_TASK_OUTBOX = "ubi.tasks.maintenance.drain_task_outbox"
PROBE = "ubi.tasks.maintenance.probe"
TRACK_STALENESS = "ubi.tasks.maintenance.track_staleness"
CLOSE_DAYS = "ubi.tasks.maintenance.close_days"
RESOLVE_ANOMALIES = "ubi.tasks.maintenance.resolve_anomalies"
RUN_DELETION = "ubi.tasks.maintenance.run_deletion"
APPLY_RETENTION = "ubi.tasks.maintenance.apply_retention"
EXPIRE_UNQUEUED_BATCHES = "ubi.tasks.maintenance.expire_unqueued_batches"

ALL: frozenset[str] = frozenset({
    INGEST_BATCH, COMPUTE_FEATURES, DETECT_TENANT, RECOMPUTE_ALL, RECOMPUTE_TENANT, RECOMPUTE_RANGE,
    DRAIN_SIGNAL_OUTBOX, DELIVER_RECEIPTS, ENSURE_EVENT_PARTITIONS, DRAIN_TASK_OUTBOX, PROBE,
    TRACK_STALENESS, CLOSE_DAYS, RESOLVE_ANOMALIES, RUN_DELETION, APPLY_RETENTION,
    EXPIRE_UNQUEUED_BATCHES,
})
