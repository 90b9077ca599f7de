"""The web's gunicorn workers share keep-alive connections (ubi/web/worker.py).

Stock gthread workers accept first come, first served, and a kept-alive connection stays with
its worker: 8 clients connecting at once were seen all on one of two workers (one GIL serving
every request). With the project's worker, 8 connections opened at once to 2 workers x 4
threads end 4 and 4, every time; and a ninth connection, beyond every worker's threads, is
still served (a full worker takes it after its deferral)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port, stop
from tests.support.waiting import wait_until

WORKERS, THREADS = 2, 4


@pytest.fixture(scope="module")
def web() -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "gunicorn.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:ubi.web.gunicorn_conf",
                 "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
                 "--threads", str(THREADS), "ubi.web.wsgi:app"],
                env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=out)
        try:
            # Both workers have the app loaded: a connection made while one is still
            # importing could only go to the other.
            if not wait_until(lambda: log.read_text().count("Worker ready") >= WORKERS
                              or proc.poll() is not None, timeout=60, interval=0.1) \
                    or proc.poll() is not None:
                raise RuntimeError(f"gunicorn did not start: {log.read_text()[-3000:]}")
            yield port, proc, log
        finally:
            stop(proc)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _established(pid: int, port: int) -> int:
    """Connections to ``port`` that process ``pid`` holds, from /proc (ESTABLISHED = 01)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "01" and cols[9] in inodes:
                held += 1
    return held


def _open_and_use(port: int, n: int) -> list[http.client.HTTPConnection]:
    """``n`` keep-alive connections opened at once, each answering three requests."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(n)]
    statuses: list[int] = []

    def use(conn: http.client.HTTPConnection) -> None:
        for _ in range(3):
            conn.request("GET", "/v1/ubi/health")
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)

    threads = [threading.Thread(target=use, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * (3 * n)
    return conns


def test_connections_opened_at_once_are_shared_between_workers(
        web: tuple[int, subprocess.Popen[bytes], Path]) -> None:
    port, proc, _ = web
    workers = _children(proc.pid)
    assert len(workers) == WORKERS
    for _ in range(3):
        conns = _open_and_use(port, WORKERS * THREADS)
        try:
            held = Counter({pid: _established(pid, port) for pid in workers})
            assert sorted(held.values()) == [THREADS] * WORKERS, held
        finally:
            for c in conns:
                c.close()
        # The closed connections are gone before the next round opens its own.
        assert wait_until(lambda: sum(_established(p, port) for p in workers) == 0,
                          timeout=10, interval=0.05)


def test_a_connection_beyond_every_workers_threads_is_still_served(
        web: tuple[int, subprocess.Popen[bytes], Path]) -> None:
    port, proc, _ = web
    conns = _open_and_use(port, WORKERS * THREADS + 1)
    try:
        held = sorted(_established(pid, port) for pid in _children(proc.pid))
        assert sum(held) == WORKERS * THREADS + 1
        assert held == [THREADS, THREADS + 1]
    finally:
        for c in conns:
            c.close()
