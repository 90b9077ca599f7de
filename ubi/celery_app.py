"""The Celery application, configured from ``celeryconfig``.

Workers: ``celery -A ubi.celery_app worker -Q <prefix>ingest,...``. At worker start the broker
topology (exchanges, queues, dead-letter exchange and queue) is declared, so dead letters are
never dropped for want of a queue; each forked child disposes the parent's DB connections.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from celery import Celery, signals
from kombu.serialization import register

from ubi.observability.logging import configure_logging

#: Batch messages carry a thousand envelopes as one JSON text inside the message: orjson
#: encodes and decodes it in about a fifth of kombu's time (0.5 against 2.3 ms each way).
#: Only plain JSON values (no dates or other types kombu's json revives), so only the tasks
#: that ask for it use it (``serializer=BATCH_SERIALIZER``); every worker accepts it.
BATCH_SERIALIZER = "ubi-orjson"
register(BATCH_SERIALIZER, orjson.dumps, orjson.loads,
         content_type="application/x-ubi-orjson", content_encoding="utf-8")
#: And compressed: zstd takes a batch message from 637 to 85 KB for 1.6 ms (0.4 ms back),
#: less than what RabbitMQ's quorum queue, py-amqp's frames and the kernel spent on the
#: difference (``docs/benchmarks.md``). kombu registers it when the zstd module imports.
BATCH_COMPRESSION = "zstd"

app = Celery("ubi")
app.config_from_object("celeryconfig")

# Every task message's argsrepr/kwargsrepr headers become summaries without personal data.
from ubi.tasks import summaries as _summaries  # noqa: E402,F401 - connects the signal


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging()


@signals.worker_init.connect
def _declare_topology(sender: Any = None, **_: Any) -> None:
    from ubi.integrations.broker import declare_topology
    from ubi.settings import get_settings

    if get_settings().embedded_broker:
        return
    declare_topology(app)
    logging.getLogger("ubi.broker").info("broker topology declared")


@signals.worker_process_init.connect
def _fork_safe_db(**_: Any) -> None:
    # A forked child must never reuse the parent's pooled sockets (apache/superset habit).
    from ubi.models.session import dispose_engines
    from ubi.runtime import tune_gc

    dispose_engines()
    tune_gc()


@signals.worker_process_shutdown.connect
def _metrics_of_a_dead_child(pid: int | None = None, **_: Any) -> None:
    # A prefork child that exits drops its live gauges (gunicorn's child_exit does the same for
    # the web); its counters and histograms stay in the group's totals.
    import os

    from ubi.observability.metrics import mark_process_dead

    mark_process_dead(pid or os.getpid())


#: This worker's group (``ubi worker GROUP`` names its node ``<prefix>GROUP@host``), found in
#: the main process and inherited by each forked child.
_worker_group: str | None = None


@signals.worker_init.connect
def _tracing_in_worker(sender: Any = None, **_: Any) -> None:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    from ubi.observability import tracing
    from ubi.settings import get_settings

    global _worker_group
    node = str(getattr(sender, "hostname", "") or "").split("@", 1)[0]
    prefix = get_settings().queue_prefix
    _worker_group = (node[len(prefix):] if prefix and node.startswith(prefix) else node) or None
    pool = get_implementation(getattr(sender, "pool_cls", None) or "prefork")
    if not (isinstance(pool, type) and issubclass(pool, PreforkPool)):
        # No fork to wait for (solo, threads): this process runs the tasks.
        tracing.configure(tracing.worker_service_name(_worker_group))


@signals.worker_process_init.connect
def _tracing_in_child(**_: Any) -> None:
    # After the fork: the span processor's export thread must be this process's own.
    from ubi.observability import tracing

    tracing.configure(tracing.worker_service_name(_worker_group))
