"""Shared helpers for benchmarks that run the real UBI processes on their own resources.

A ``BenchStack`` owns everything a run creates and removes it again, also on Ctrl-C, SIGTERM
or an error:

- a PostgreSQL database ``ubi_bench_<id>`` (created with the admin URL, migrated with
  ``ubi.services.schema.upgrade``), dropped ``WITH (FORCE)`` at the end;
- a queue-name prefix ``bench<id>.`` and the broker topology ``ubi broker declare`` declared
  under it, deleted at the end;
- a temporary directory (data dir, ``UBI_METRICS_DIR``, the processes' logs);
- the processes it started (gunicorn, ``ubi worker ...``), each in its own session so that it
  and its children are stopped by its process-group id.

Children get a complete environment (``child_env``): nothing of the caller's ``UBI_*`` /
``DATABASE_URL`` / broker settings leaks in. Also here: free ports, development tokens, and
CPU accounting from ``/proc`` (per process tree, per PostgreSQL backend, whole machine).

Example::

    with BenchStack() as stack:
        base_url = stack.start_web(workers=2, threads=4)
        stack.start_worker("ingest", concurrency=2)
        token = stack.token("acme", "ubi:write:events")
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import requests
import sqlalchemy as sa

from ubi.integrations.broker import delete_broker_objects
from ubi.services.databases import create_database, database_url, drop_database

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Variables a child must never inherit from the caller: the stack sets its own.
_OWN_PREFIXES = ("UBI_", "CELERY_", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_OWN_NAMES = {"DATABASE_URL", "REDIS_URL", "PORT"}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signing_key_pem() -> str:
    """A fresh Ed25519 private key (PEM) for ``UBI_RECEIPT_SIGNING_KEY``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()




# --- processes -------------------------------------------------------------------------------

@dataclass
class ManagedProcess:
    """A child started in its own session (its pid is its process-group id)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL to what is left of the process group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        if self.alive():  # the leader is not reaped yet, so its group id is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        else:  # children that outlived their parent keep its group id
            for pid in group_members(self.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    out = []
    for pid in _all_pids():
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(pid)
    return out


def child_env(own: dict[str, str]) -> dict[str, str]:
    """The caller's environment without UBI's settings, plus ``own``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_OWN_PREFIXES) and k not in _OWN_NAMES}
    env.update(own)
    return env


class _Interrupted(KeyboardInterrupt):
    """SIGTERM / SIGHUP turned into an exception so that clean-up runs."""


@dataclass
class BenchStack:
    """A benchmark's own database, queue prefix, temp dir and processes (context manager)."""

    admin_url: str = DEFAULT_PG_ADMIN_URL
    broker_url: str = DEFAULT_BROKER_URL
    redis_url: str = DEFAULT_REDIS_URL
    log_level: str = "WARNING"
    extra_env: dict[str, str] = field(default_factory=dict)
    keep: bool = False  #: leave the database behind (debugging); processes still stop
    #: run on an existing database named ``db_name`` (migrated, never created nor dropped)
    reuse: bool = False

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: list[ManagedProcess] = field(default_factory=list)
    declared: dict[str, Any] = field(default_factory=dict)
    tmpdir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _db_created: bool = False
    _old_handlers: dict[int, Any] = field(default_factory=dict)

    @property
    def db_name(self) -> str:
        return f"ubi_bench_{self.run_id}"

    @property
    def queue_prefix(self) -> str:
        return f"bench{self.run_id}."

    @property
    def database_url(self) -> str:
        return database_url(self.admin_url, self.db_name)

    @property
    def settings(self) -> Any:
        """``ubi.settings.Settings`` of the children (built from ``env``, not this process)."""
        from ubi.settings import load_settings

        return load_settings(self.env)

    # -- lifecycle --

    def __enter__(self) -> BenchStack:
        self._install_signal_handlers()
        try:
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"ubi-bench-{self.run_id}-"))
            metrics = self.tmpdir / "metrics"
            metrics.mkdir()
            self.env = {
                "DATABASE_URL": self.database_url,
                "CELERY_BROKER_URL": self.broker_url,
                "REDIS_URL": self.redis_url,
                "UBI_QUEUE_PREFIX": self.queue_prefix,
                "UBI_DATA_DIR": str(self.tmpdir / "data"),
                "UBI_PSEUDONYM_SECRET": "bench-pseudonym-" + uuid.uuid4().hex,
                "UBI_RECEIPT_SIGNING_KEY": signing_key_pem(),
                "UBI_JWT_SECRET": "bench-jwt-" + uuid.uuid4().hex + uuid.uuid4().hex,
                "UBI_METRICS_DIR": str(metrics),
                "UBI_LOG_LEVEL": self.log_level,
                "UBI_LOG_FORMAT": "json",
                **self.extra_env,
            }
            if not self.reuse:
                create_database(self.admin_url, self.db_name)
            self._db_created = True
            from ubi.services import schema

            schema.upgrade(self.settings)
            self.declared = self.declare_broker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process, delete the broker objects, drop the database, remove files."""
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()
        if self.declared:
            with contextlib.suppress(Exception):
                delete_broker_objects(self.broker_url, self.declared)
            self.declared = {}
        if self._db_created and not (self.keep or self.reuse):
            with contextlib.suppress(Exception):
                from ubi.models.session import reset_engines

                reset_engines()
            try:
                drop_database(self.admin_url, self.db_name)
            except Exception as exc:  # pragma: no cover - reported, never hidden
                print(f"warning: could not drop database {self.db_name}: {exc}",
                      file=sys.stderr)
            self._db_created = False
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        self._restore_signal_handlers()

    def _install_signal_handlers(self) -> None:
        def interrupt(signum: int, _frame: FrameType | None) -> None:
            raise _Interrupted(f"signal {signum}")

        with contextlib.suppress(ValueError):  # only possible in the main thread
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._old_handlers[sig] = signal.signal(sig, interrupt)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._old_handlers.clear()

    # -- children --

    def spawn(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
              ) -> ManagedProcess:
        """Start ``argv`` with the stack's environment (plus ``env``), stderr to a log file."""
        assert self.tmpdir is not None, "use the stack as a context manager"
        log_path = self.tmpdir / f"{name}-{len(self.processes)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv), cwd=PROJECT_ROOT, env=child_env({**self.env, **(env or {})}),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        proc = ManagedProcess(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def run_cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``ubi ARGS`` to completion with the stack's environment; its stdout."""
        done = subprocess.run([sys.executable, "-m", "ubi.cli", *args], cwd=PROJECT_ROOT,
                              env=child_env(self.env), capture_output=True, timeout=timeout,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ubi {' '.join(args)} failed: "
                               f"{done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode()

    def declare_broker(self) -> dict[str, Any]:
        """``ubi broker declare``: the prefixed exchanges and queues (removed at close)."""
        return dict(json.loads(self.run_cli("broker", "declare")))

    def start_web(self, *, workers: int = 2, threads: int = 4, port: int | None = None,
                  timeout: float = 30.0, extra_args: Iterable[str] = ()) -> str:
        """gunicorn with the project's config; returns the API base URL once it answers."""
        port = port or free_port()
        proc = self.spawn("gunicorn", [
            sys.executable, "-m", "gunicorn", "-c", "python:ubi.web.gunicorn_conf",
            "--workers", str(workers), "--threads", str(threads), *extra_args,
            "ubi.web.wsgi:app"], env={"PORT": str(port)})
        base = f"http://127.0.0.1:{port}/v1/ubi"
        deadline = time.monotonic() + timeout
        while True:
            # Every worker loaded too: clients that connect while one is still importing the
            # app all land, and stay (keep-alive), on the others.
            with contextlib.suppress(requests.RequestException):
                if (proc.log_tail(1 << 20).count("Worker ready") >= workers
                        and requests.get(f"{base}/health", timeout=1).ok):
                    return base
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{proc.log_tail()}")
            time.sleep(0.1)

    def start_worker(self, group: str, *, concurrency: int = 2, timeout: float = 60.0,
                     queues: Sequence[str] | None = None, extra_args: Iterable[str] = (),
                     env: dict[str, str] | None = None) -> ManagedProcess:
        """``ubi worker GROUP --concurrency N``; returns once it consumes its queues.

        ``queues`` are the group's queues without prefix (default: the group's name, which is
        right for ``ingest``, ``baselines`` and ``maintenance``). The node name is unique to the
        run, and mingle / gossip are off: both broadcast over Celery's unprefixed control
        exchanges and would talk to other runs' workers.
        """
        proc = self.spawn(f"worker-{group}", [
            sys.executable, "-m", "ubi.cli", "worker", group, "--concurrency", str(concurrency),
            "-n", f"bench{self.run_id}-{group}-{len(self.processes)}@%h",
            "--without-mingle", "--without-gossip", *extra_args], env=env)
        for queue in queues or (group,):
            wait_for_consumers(self.broker_url, self.queue_name(queue), proc, timeout=timeout)
        return proc

    def queue_name(self, name: str) -> str:
        return f"{self.queue_prefix}{name}"

    def token(self, tenant_id: str | None, *roles: str, sub: str = "bench-loader",
              ttl_s: int = 6 * 3600) -> str:
        """A development HS256 token the children accept."""
        from ubi.web.auth import mint_token

        return mint_token(sub=sub, tenant_id=tenant_id, roles=roles or ("ubi:write:events",),
                          settings=self.settings, ttl=timedelta(seconds=ttl_s))

    def sql_engine(self, **kwargs: Any) -> sa.Engine:
        """A small engine on the run's database (for sampling and checks)."""
        kwargs.setdefault("poolclass", sa.NullPool)
        return sa.create_engine(self.database_url, **kwargs)

    def check_alive(self) -> None:
        """Raise if a started process died (with the tail of its log)."""
        for proc in self.processes:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                                   f"{proc.log_tail()}")


# --- broker ---------------------------------------------------------------------------------

class QueueProbe:
    """Passive ``queue_declare`` on one queue: ready messages and consumers, cheaply."""

    def __init__(self, broker_url: str, queue: str):
        from kombu import Connection

        self.queue = queue
        self._conn = Connection(broker_url, connect_timeout=5)
        self._channel = self._conn.channel()

    def depth(self) -> tuple[int, int]:
        """(messages ready, consumers)."""
        ok = self._channel.queue_declare(self.queue, passive=True)
        return int(ok.message_count), int(ok.consumer_count)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._channel.close()
        with contextlib.suppress(Exception):
            self._conn.release()


def wait_for_consumers(broker_url: str, queue: str, proc: ManagedProcess,
                       timeout: float = 60.0, count: int = 1) -> None:
    """Block until ``queue`` has ``count`` consumers (the worker is ready)."""
    probe = QueueProbe(broker_url, queue)
    try:
        deadline = time.monotonic() + timeout
        while probe.depth()[1] < count:
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} does not consume {queue}:\n{proc.log_tail()}")
            time.sleep(0.2)
    finally:
        probe.close()


# --- CPU accounting --------------------------------------------------------------------------

def _read_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself: user + system) from /proc.

    Reaped children's time (``cutime``) is left out: a parent such as the postmaster collects
    the whole lifetime of every child that exits, which would count them twice.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid=4, utime=14, stime=15
    ticks = int(fields[11]) + int(fields[12])
    return int(fields[1]), ticks / _CLK_TCK


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def process_tree(root: int) -> list[int]:
    """``root`` and all of its descendants."""
    parent: dict[int, int] = {}
    for pid in _all_pids():
        st = _read_stat(pid)
        if st is not None:
            parent[pid] = st[0]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parent or pid == root:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def pids_by_name(*names: str) -> list[int]:
    """Processes whose ``comm`` is one of ``names`` (e.g. ``beam.smp``, ``postgres``)."""
    out = []
    for pid in _all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in names:
            out.append(pid)
    return out


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds per pid (user + system); pids that are gone are left out."""
    out = {}
    for pid in pids:
        st = _read_stat(pid)
        if st is not None:
            out[pid] = st[1]
    return out


def machine_cpu() -> dict[str, float]:
    """Seconds summed over every CPU since boot, from /proc/stat: ``busy`` (user, nice,
    system, irq, softirq), ``irq`` (irq + softirq: e.g. loopback networking, which no process
    is charged for), ``steal`` (taken by the hypervisor) and ``total``."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in parts[:8]] + [0] * max(0, 8 - len(parts))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return {"busy": (user + nice + system + irq + softirq) / _CLK_TCK,
            "irq": (irq + softirq) / _CLK_TCK, "steal": steal / _CLK_TCK,
            "total": (user + nice + system + idle + iowait + irq + softirq + steal) / _CLK_TCK}


@dataclass
class CpuMeter:
    """CPU seconds per named component over a window: ``start()``, then ``stop()``.

    Components are callables returning the pids to count (re-evaluated at both ends, so
    processes started inside the window count in full).
    """

    components: dict[str, Any]
    #: Components counted inside another one (left out of the "unaccounted" sum).
    overlapping: tuple[str, ...] = ()
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(fn()) for name, fn in self.components.items()}
        self._machine = machine_cpu()
        self._t = time.monotonic()

    def stop(self) -> dict[str, Any]:
        m0, m1 = self._machine, machine_cpu()
        d = {k: m1[k] - m0.get(k, 0.0) for k in m1}
        wall = time.monotonic() - self._t
        out: dict[str, Any] = {"wall_s": round(wall, 2)}
        for name, fn in self.components.items():
            now = cpu_seconds(fn())
            before = self._start.get(name, {})
            used = sum(v - before.get(pid, 0.0) for pid, v in now.items())
            out[f"{name}_cpu_s"] = round(used, 2)
        ours = sum(v for k, v in out.items() if k.endswith("_cpu_s")
                   and not k.startswith(tuple(self.overlapping)))
        out["kernel_irq_cpu_s"] = round(d["irq"], 2)
        out["machine_busy_cpu_s"] = round(d["busy"], 2)
        # Whatever else ran on the machine meanwhile (other users' work skews the figures).
        out["unaccounted_cpu_s"] = round(d["busy"] - d["irq"] - ours, 2)
        out["steal_cpu_s"] = round(d["steal"], 2)
        out["machine_cpus"] = os.cpu_count()
        out["machine_busy_pct"] = round(100 * d["busy"] / max(d["total"], 1e-9), 1)
        return out


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` holds the elapsed seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


# --- database statistics --------------------------------------------------------------------

def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as a libpq one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def server_setting(admin_url: str, name: str) -> str:
    """``current_setting(name)`` of the server."""
    import psycopg

    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        return str(row[0]) if row else ""


class PeriodicAnalyze:
    """``VACUUM (ANALYZE)`` / ``ANALYZE`` a database every ``interval`` seconds in a thread.

    A stand-in for autovacuum on servers that run with ``autovacuum = off`` (CI and
    development servers often do): without it a database that starts empty keeps the
    planner's empty-table estimates for the whole run, and rows updated in place (upserted
    rollups) pile up dead versions, which no production database does. ``vacuum`` names the
    tables to vacuum (those updated in place; ``None``: the whole database); every table is
    analysed. ``cpu_s`` is the CPU time of the server backends that did it (same machine).
    """

    def __init__(self, database_url: str, interval: float, first: float | None = None, *,
                 vacuum: Sequence[str] | None = None):
        import threading

        self.url = libpq_url(database_url)
        self.interval = interval
        self.first = min(5.0, interval) if first is None else first
        if vacuum is None:
            self.statements = ["VACUUM (ANALYZE)"]
        else:  # one statement per table: a table this schema lacks fails alone
            self.statements = [f"VACUUM (ANALYZE) {t}" for t in vacuum] + ["ANALYZE"]
        self.runs = 0
        self.seconds = 0.0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="periodic-analyze", daemon=True)

    def start(self) -> PeriodicAnalyze:
        if self.interval > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        import psycopg

        wait = self.first
        while not self._stop.wait(wait):
            wait = self.interval
            t = time.perf_counter()
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    backend = conn.info.backend_pid
                    for statement in self.statements:
                        with contextlib.suppress(psycopg.errors.UndefinedTable):
                            conn.execute(statement)
                    self.cpu_s += cpu_seconds([backend]).get(backend, 0.0)
            except psycopg.Error:
                continue
            self.runs += 1
            self.seconds += time.perf_counter() - t

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)


# --- command line shared by the load benchmarks ----------------------------------------------

def add_load_arguments(p: argparse.ArgumentParser, *, warmup: float, days: float,
                       load_processes: int, load_threads: int, sample_interval: float) -> None:
    """The options ``ingest`` and ``pipeline`` share (their defaults differ where given)."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--duration", type=float, default=60.0,
                   help="measured window in seconds (default 60)")
    p.add_argument("--warmup", type=float, default=warmup, help="seconds before the window")
    p.add_argument("--rate", type=float, default=0.0,
                   help="offered events/s (open loop); default: max throughput")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--actors", type=int, default=400, help="actors per tenant")
    p.add_argument("--days", type=float, default=days,
                   help="occurred_at within this many days before now")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--load-processes", type=int, default=load_processes)
    p.add_argument("--load-threads", type=int, default=load_threads, help="per load process")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--web-threads", type=int, default=4)
    p.add_argument("--sample-interval", type=float, default=sample_interval)
    p.add_argument("--analyze-interval", type=float, default=-1.0,
                   help="VACUUM (ANALYZE) the run's database every S seconds during the run, "
                   "as autovacuum would (default: 15 s when the server runs with autovacuum "
                   "off, else never; 0 = never)")
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the database (debugging)")
    p.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    p.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)


def analyze_every(args: argparse.Namespace) -> tuple[str, float]:
    """(the server's ``autovacuum`` setting, seconds between the run's own VACUUM ANALYZE)."""
    autovacuum = server_setting(args.pg_admin_url, "autovacuum")
    if args.analyze_interval >= 0:
        return autovacuum, args.analyze_interval
    return autovacuum, 15.0 if autovacuum == "off" else 0.0


def load_main(parser: argparse.ArgumentParser, argv: list[str] | None,
              run: Callable[[argparse.Namespace], dict[str, Any]],
              summary: Callable[[dict[str, Any]], None]) -> int:
    """Parse, run, print the figures (``--json``: one object); Ctrl-C cleans up and says so."""
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.duration <= 0 or args.load_processes < 1:
        print("batch size, duration and load processes must be positive", file=sys.stderr)
        return 2
    try:
        figures = run(args)
    except KeyboardInterrupt:
        print("interrupted: everything the run created was removed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        summary(figures)
    return 0


# --- figures ---------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def rounded(value: float | None, nd: int = 3) -> float | None:
    return None if value is None else round(value, nd)


def fmt(value: Any, unit: str = "") -> str:
    """A figure for the summary: thousands separators for counts, '-' when not measured."""
    if value is None:
        return "-"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def cpu_reference_ms(rounds: int = 5) -> float:
    """Milliseconds one core takes for a fixed pure-Python workload (JSON, sorting, integer
    arithmetic; the best of ``rounds``). Shared and throttled machines drift: two runs' events/s
    are only comparable when this figure was about the same (docs/benchmarks.md)."""
    import json

    doc = [{"id": f"e{i}", "n": i * 7 % 1000, "tags": ["a", "b", str(i % 13)]}
           for i in range(2000)]
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(4):
            back = json.loads(json.dumps(doc))
            back.sort(key=lambda d: (d["n"], d["id"]))
            total = 0
            for i in range(100_000):
                total += i * i % 7
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def print_cpu(cpu: dict[str, Any]) -> None:
    """The ``CpuMeter`` figures as one summary line, and a warning when other processes on
    the machine took more than a tenth of it during the window."""
    if not cpu:
        return
    parts = ", ".join(f"{k[:-6]} {v}" for k, v in cpu.items()
                      if k.endswith("_cpu_s") and k != "machine_busy_cpu_s")
    print(f"  CPU s in window   {parts};  machine busy {cpu['machine_busy_pct']} % of "
          f"{cpu['machine_cpus']} CPUs")
    if cpu["unaccounted_cpu_s"] > 0.1 * cpu["wall_s"] * (cpu["machine_cpus"] or 1):
        print(f"  WARNING: {cpu['unaccounted_cpu_s']} CPU s went to other processes on the "
              "machine during the window; the figures are skewed")


def print_reference(settings: dict[str, Any]) -> None:
    """The ``cpu_reference_ms`` of a run's settings as one summary line."""
    ref = settings.get("cpu_reference_ms")
    if ref:
        print(f"  machine speed     reference workload {ref['before']} ms before, "
              f"{ref['after']} ms after (compare runs only at similar values)")
