"""gunicorn settings for the web process (Procfile ``web``)."""

from __future__ import annotations

from typing import Any

from ubi.observability.multiproc import prepare_group
from ubi.settings import get_settings

_settings = get_settings()

bind = f"0.0.0.0:{_settings.port}"
workers = 2
threads = 4
# gthread that offers new connections to idle workers first (ubi/web/worker.py).
worker_class = "ubi.web.worker.PoliteThreadWorker"
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The path without its query string: queries can carry an original actor id
# (``/signals/recent?actor_id=``) or a token (``/ui/sign-in?token=``), which are never logged
# (SPEC §8); the request id joins an access line to the app's own JSON log lines.
access_log_format = ('%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" '
                     '%({x-request-id}o)s')


def on_starting(server: Any) -> None:
    # The web group's metrics directory, emptied once in the master (not on a reload), before
    # any worker forks and imports prometheus_client: they inherit it (SPEC §11, multiproc).
    prepare_group("web")
    from ubi.store.connections import check_budget

    check_budget("web", workers, _settings)


def post_fork(server: Any, worker: Any) -> None:
    from ubi.runtime import tune_gc

    tune_gc()


def post_worker_init(worker: Any) -> None:
    # The app is loaded: until this line a worker takes no request (benchmarks wait for it).
    worker.log.info("Worker ready (pid: %s)", worker.pid)


def child_exit(server: Any, worker: Any) -> None:
    from ubi.observability.metrics import mark_process_dead

    mark_process_dead(worker.pid)
