"""The Celery application, configured from ``celeryconfig``.

Workers: ``celery -A ubi.celery_app worker -Q <prefix>ingest,...``. At worker start the broker
topology (exchanges, queues, dead-letter exchange and queue) is declared, so dead letters are
never dropped for want of a queue; each forked child disposes the parent's DB connections.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from ubi.observability.logging import configure_logging

app = Celery("ubi")
app.config_from_object("celeryconfig")


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
