"""Real servers for tests: the web API over HTTP (in a process or a thread), a Celery
worker that can be killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextmanager
def web_process(**env: str) -> Iterator[str]:
    """``ubi devserver web`` in a subprocess; yields its base URL."""
    port = free_port()
    # Its log goes to a file, as a worker's does: a pipe nobody reads would stall a web that
    # logs more than the pipe holds (64 KB of an outage's warnings) on its next log line.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "ubi.cli", "devserver", "web", "--port", str(port)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}/v1/ubi"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"web did not start: {log.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        stop(proc, timeout=10)
        log.close()


@contextmanager
def web_thread(app: Any) -> Iterator[str]:
    """``app`` served by werkzeug's threaded WSGI server on a free loopback port, in a thread
    of this process (its errors land in this test's captured log); yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/ubi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class WorkerProcess:
    """``ubi worker GROUP`` in a subprocess (so it can be SIGKILLed): one process (``solo``)
    by default, or the production ``prefork`` pool with ``concurrency`` children."""

    def __init__(self, group: str, *, pool: str = "solo", concurrency: int | None = None,
                 **env: str):
        args = [sys.executable, "-m", "ubi.cli", "worker", group, "--pool", pool,
                "--without-heartbeat", "--without-mingle", "--without-gossip"]
        if concurrency:
            args += ["--concurrency", str(concurrency)]
        # Its log goes to a file: a pipe nobody reads would stall a worker that logs a lot.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.proc = subprocess.Popen(args, env={**os.environ, **env},
                                     stdout=subprocess.DEVNULL, stderr=self.log)

    def log_tail(self, size: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-size:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
