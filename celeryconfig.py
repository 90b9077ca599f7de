"""Celery settings for UBI: broker and backend from ``ubi.settings``, queues with their
dead-letter arguments, routes, beat schedule, and the acknowledgement policy.

Reliability choices (ARCHITECTURE.md §6):
- late acks, and ``task_acks_on_failure = False`` so a failed task is rejected and
  dead-lettered instead of silently acknowledged;
- quorum queues dead-lettering at-least-once into ``ubi.tasks.dlq`` with an explicit delivery
  limit, which bounds the redelivery loop of ``task_reject_on_worker_lost``;
- publisher confirms; prefetch 1; no queue is ever created implicitly.
"""

from __future__ import annotations

from celery.schedules import crontab
from kombu import Exchange, Queue

from ubi.settings import get_settings
from ubi.tasks import names

_settings = get_settings()
P = _settings.queue_name

#: The queues of SPEC §14, in pipeline order.
QUEUE_NAMES: tuple[str, ...] = (
    "ingest", "features", "baselines", "detect", "publish", "receipts", "maintenance")
#: Redeliveries before a message dead-letters (RabbitMQ counts returns, e.g. a killed worker).
DELIVERY_LIMIT = 5

TASK_EXCHANGE = Exchange(P("ubi.tasks"), type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange(P("ubi.tasks.dlx"), type="topic", durable=True)
DEAD_LETTER_QUEUE_NAME = P("ubi.tasks.dlq")

QUEUE_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
    "x-delivery-limit": DELIVERY_LIMIT,
}


def _queue(name: str) -> Queue:
    full = P(name)
    # The routing key equals the (prefixed) queue name: unique per deployment, which the shared
    # native-delayed-delivery exchange relies on to route retries back to the right queue.
    return Queue(full, exchange=TASK_EXCHANGE, routing_key=full, durable=True,
                 queue_arguments=dict(QUEUE_ARGUMENTS))


task_queues = tuple(_queue(n) for n in QUEUE_NAMES)
QUEUE_BY_NAME = {n: q for n, q in zip(QUEUE_NAMES, task_queues, strict=True)}
DEAD_LETTER_QUEUE = Queue(
    DEAD_LETTER_QUEUE_NAME, exchange=DEAD_LETTER_EXCHANGE, routing_key="#", durable=True,
    queue_arguments={"x-queue-type": "quorum"})

#: Worker processes of the Procfile / compose and the queues each consumes (``ubi worker GROUP``).
WORKER_GROUPS: dict[str, tuple[str, ...]] = {
    "ingest": ("ingest",),
    "pipeline": ("features", "detect"),
    "baselines": ("baselines",),
    "delivery": ("publish", "receipts"),
    "maintenance": ("maintenance",),
}

#: Task name prefix -> queue. Every task lives in the module named after its queue.
TASK_MODULE_QUEUES = {f"ubi.tasks.{n}.": n for n in QUEUE_NAMES}


def route_task(name: str, args: object, kwargs: object, options: object,
               task: object = None, **kw: object) -> dict[str, object]:
    """Route ``ubi.tasks.<queue>.<task>`` to ``<queue>``; refuse anything else."""
    for prefix, queue in TASK_MODULE_QUEUES.items():
        if name.startswith(prefix):
            q = QUEUE_BY_NAME[queue]
            return {"queue": q, "exchange": TASK_EXCHANGE, "routing_key": q.routing_key}
    if name.startswith("celery."):  # Celery's own (chord unlock, ping): maintenance queue
        q = QUEUE_BY_NAME["maintenance"]
        return {"queue": q, "exchange": TASK_EXCHANGE, "routing_key": q.routing_key}
    raise LookupError(f"no route for task {name!r}: tasks must live in ubi.tasks.<queue>")


broker_url = _settings.broker_url
result_backend = _settings.result_backend
broker_connection_timeout = _settings.broker_connect_timeout
broker_connection_retry_on_startup = True
# Workers (and beat) look for a lost broker again forever, every 2, 4, ... up to 30 s: Celery's
# default gives up after 100 attempts (about 47 minutes) and the process exits, which under
# the Procfile stops every process and elsewhere needs a restart after a long broker outage.
broker_connection_max_retries = None
# A send to a broker that stopped answering (a partition: the connection open, the socket's
# buffer full) fails after the broker timeout instead of blocking for good; kombu then counts
# the connection lost (retried on a new one, then the API's 503 or a task's retry). Not a read
# timeout: an idle consumer (Flower's event receiver) would be cut every few seconds.
broker_transport_options = {"confirm_publish": True,
                            "write_timeout": _settings.broker_connect_timeout}
broker_pool_limit = 10

task_default_queue = P("maintenance")
task_default_exchange = TASK_EXCHANGE.name
task_default_exchange_type = "topic"
task_default_routing_key = P("maintenance")
task_create_missing_queues = False
#: Countdowns (retries, busy looks) travel through RabbitMQ native delayed delivery, in quorum
#: queues like ours (also declared and bound by ``ubi broker declare``).
broker_native_delayed_delivery_queue_type = "quorum"
task_routes = (route_task,)

task_serializer = "json"
result_serializer = "json"
# "ubi-orjson": JSON by orjson for the ingest task's large messages (``ubi.celery_app``).
accept_content = ["json", "ubi-orjson"]
task_ignore_result = True
result_expires = 24 * 3600

task_acks_late = True
task_acks_on_failure = False
task_reject_on_worker_lost = True
task_track_started = True
task_time_limit = 30 * 60
task_soft_time_limit = 25 * 60
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                             "interval_max": 1.0}

worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False
worker_max_tasks_per_child = 1000

# Embedded default: no broker configured, so tasks run in-process, eagerly (demo only).
task_always_eager = _settings.embedded_broker
task_eager_propagates = _settings.embedded_broker

timezone = "UTC"
enable_utc = True

imports = tuple(f"ubi.tasks.{n}" for n in QUEUE_NAMES)

# Beat (one instance only; the scheduler takes a Redis lock, see ubi/tasks/beat.py).
# Every entry has an explicit queue (through its task name) and expires within its period.
beat_schedule = {
    "ensure-event-partitions": {
        "task": names.ENSURE_EVENT_PARTITIONS,
        "schedule": crontab(minute=5),
        "options": {"expires": 3000},
    },
    "drain-task-outbox": {
        "task": names.DRAIN_TASK_OUTBOX,
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    "drain-signal-outbox": {
        "task": names.DRAIN_SIGNAL_OUTBOX,
        "schedule": 3.0,
        "options": {"expires": 3},
    },
    "deliver-receipts": {
        "task": names.DELIVER_RECEIPTS,
        "schedule": 5.0,
        "options": {"expires": 5},
    },
    "track-staleness": {
        "task": names.TRACK_STALENESS,
        "schedule": crontab(),  # every minute
        "options": {"expires": 55},
    },
    "close-days": {
        "task": names.CLOSE_DAYS,
        "schedule": crontab(minute="5,35"),  # after a day's end + grace (01:00), and a sweep
        "options": {"expires": 1500},
    },
    "expire-unqueued-batches": {
        "task": names.EXPIRE_UNQUEUED_BATCHES,
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 540},
    },
    "resolve-anomalies": {
        "task": names.RESOLVE_ANOMALIES,
        "schedule": crontab(minute=15),
        "options": {"expires": 3000},
    },
    "retention": {  # SPEC §8: daily, away from the nightly recompute
        "task": names.APPLY_RETENTION,
        "schedule": crontab(hour=1, minute=30),
        "options": {"expires": 6 * 3600},
    },
    "nightly-baselines": {
        "task": names.RECOMPUTE_ALL,
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 6 * 3600},
    },
}


def validate_routes() -> None:
    """Fail at import when a route names a queue that is not declared."""
    declared = {q.name for q in task_queues}
    grouped = [q for group in WORKER_GROUPS.values() for q in group]
    if sorted(grouped) != sorted(QUEUE_NAMES):
        raise RuntimeError("every queue must be consumed by exactly one worker group")
    for queue in TASK_MODULE_QUEUES.values():
        if P(queue) not in declared:
            raise RuntimeError(f"route to undeclared queue {queue!r}")
    for name, entry in beat_schedule.items():
        route_task(str(entry["task"]), (), {}, {})
        if "expires" not in entry.get("options", {}):
            raise RuntimeError(f"beat entry {name!r} has no expires")


validate_routes()
