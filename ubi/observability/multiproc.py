"""One multiprocess metrics directory per process group (SPEC §11, prometheus-client).

prometheus-client's multiprocess mode names each process's files by its pid, so a directory
must never be shared by processes of two pid namespaces (two containers): their pids collide
and they would write into each other's files. Each group start (gunicorn: ``web``; ``ubi worker
GROUP``) therefore owns ``<UBI_METRICS_DIR>/<group>``: it empties it (the files
of its previous run are stale: their pids are gone and may be reused) and exports it as
``PROMETHEUS_MULTIPROC_DIR`` to itself and its children. The web's metrics page merges every
group directory under ``UBI_METRICS_DIR`` (``observability.metrics``), so one host's web shows
what its workers recorded.

This module must not import prometheus_client: the client picks multiprocess mode once, when
it is first imported, from the environment this sets.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
from pathlib import Path

from ubi.settings import get_settings, set_process_env, unset_process_env

_GROUP = re.compile(r"[a-z][a-z0-9_-]*")


def prepare_group(group: str) -> Path:
    """Take this group's directory, empty it and export it to this process and its children;
    call before anything imports prometheus_client.

    The directory is held with an advisory lock for the life of the process (its children
    inherit the lock, and it goes with the last of them, however they die): a second copy of
    the group on the same volume (``docker compose up --scale``) takes ``<group>.2``, and so
    on, instead of emptying and sharing the first one's."""
    if not _GROUP.fullmatch(group):
        raise ValueError(f"bad metrics group name {group!r}")
    root = get_settings().metrics_dir
    root.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        name = group if n == 1 else f"{group}.{n}"
        lock = os.open(root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)  # a live copy of the group holds it
            continue
        _held.append(lock)  # open for the life of the process, never closed
        path = root / name
        break
    if path.exists():
        shutil.rmtree(path)  # a previous run's files: their processes are gone
    path.mkdir()
    # Both, so children that build their settings again see the same root and directory.
    set_process_env("UBI_METRICS_DIR", str(root))
    set_process_env("PROMETHEUS_MULTIPROC_DIR", str(path))
    get_settings.cache_clear()
    return path


#: Lock descriptors of the group directories this process holds.
_held: list[int] = []


def no_group() -> None:
    """A process that records nothing worth scraping (beat): in-process metrics only, even
    when it inherited a group's directory; call before anything imports prometheus_client."""
    unset_process_env("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    get_settings.cache_clear()
