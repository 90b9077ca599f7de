"""gunicorn settings for the web process (Procfile ``web``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ubi.settings import get_settings, set_process_env

_settings = get_settings()

bind = f"0.0.0.0:{_settings.port}"
workers = 2
threads = 4
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = "-"
# The path without its query string: queries can carry an original actor id
# (``/signals/recent?actor_id=``) or a token (``/ui/sign-in?token=``), which are never logged
# (SPEC §8); the request id joins an access line to the app's own JSON log lines.
access_log_format = ('%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" '
                     '%({x-request-id}o)s')
# Metrics of every worker process are aggregated from files in this directory (SPEC §11).
_metrics_dir = _settings.prometheus_multiproc_dir or str(_settings.data_dir / "metrics")
set_process_env("PROMETHEUS_MULTIPROC_DIR", _metrics_dir)
get_settings.cache_clear()  # workers import the app after fork and must see the directory


def on_starting(server: Any) -> None:
    from ubi.store.connections import check_budget

    check_budget("web", workers, _settings)
    path = Path(_metrics_dir)
    if path.exists() and not _settings.prometheus_multiproc_dir:
        shutil.rmtree(path)  # our own default dir: stale files of a previous run go
    path.mkdir(parents=True, exist_ok=True)


def post_fork(server: Any, worker: Any) -> None:
    from ubi.runtime import tune_gc

    tune_gc()


def child_exit(server: Any, worker: Any) -> None:
    from ubi.observability.metrics import mark_process_dead

    mark_process_dead(worker.pid)
