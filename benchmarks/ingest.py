"""Ingestion benchmark: POST /v1/ubi/events → ingest queue → PostgreSQL, end to end.

Runs the real processes on the run's own resources (``benchmarks._harness.BenchStack``: its
own database ``ubi_bench_<id>``, queue prefix, temp dir; all removed at the end, also on
Ctrl-C): gunicorn with the project's config and ``ubi worker ingest --concurrency N``. Load
comes from separate load processes on loopback (keep-alive ``requests`` sessions), which
submit 1,000-event batches of realistic envelopes (several tenants, hundreds of actors each,
the whole taxonomy, payload and resource keys to minimise, counterparts, work items, a few
privacy-tagged envelopes, ``occurred_at`` within the last few days with assorted UTC offsets,
unique signal ids), one tenant per batch with that tenant's token (``ubi:write:events``).

Modes:

- ``--rate EVENTS_PER_S``: offered load, open loop (batches are sent on schedule whatever the
  answers; a late send is reported as ``send_lag``);
- default, max throughput: closed loop with back-pressure; senders hold off while more than
  ``--max-queued`` batch messages wait in the ingest queue (``--max-queued 0``: no
  back-pressure, a flood that measures how fast the web alone can accept).

Figures (``--json`` prints one object; the first six are the issue's):

- ``accepted_events_per_s``: events answered 202-accepted per second, over the window;
- ``stored_events_per_s``: events inserted per second over the window (batches'
  ``finished_at``/``inserted``), ``stored_events_per_s_with_drain`` from the first acceptance
  to the last batch stored;
- ``p50/p95_accept_to_stored_s``: from the client's receipt of the 202 to the batch's
  ``finished_at`` (``server_*``: from the batch's ``created_at``, set at acceptance), with
  the queue wait (``created_at`` → ``started_at``) and processing time shown apart;
- ``max_backlog``: the largest number of accepted-not-stored events seen (batches queued or
  processing, sampled every ``--sample-interval``), and the largest ingest queue depth;
- ``copy_events_per_s``: after the run, on the same database, a bare psycopg ``COPY`` of the
  same number of rows, read back from ``events`` (every column, JSONB adapted like ingestion
  does), into ``scratch (LIKE events INCLUDING DEFAULTS)``; ``copy_indexed_events_per_s``
  does the same into a table with the events' primary key and index;
- CPU seconds per component over the window (load, web, worker, PostgreSQL backends of the
  run's database, all PostgreSQL, RabbitMQ) and machine utilisation;
- with ``--timings``: the worker's per-stage ``timings_ms`` (``store_batch``), averaged;
- with ``--py-spy DIR``: collapsed-stack profiles of web and worker over the window.

The window is the ``--duration`` seconds after a ``--warmup``. Usage::

    ubi bench ingest [--json] [--duration 60] [--rate 5000] [--worker-concurrency 3] ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from benchmarks import _harness as h
from benchmarks._harness import percentile
from benchmarks._harness import rounded as _r

# --- realistic envelopes ---------------------------------------------------------------------

#: Relative frequency of each signal_type (canonical types; all of SPEC §4).
TYPE_WEIGHTS: dict[str, float] = {
    "file_edited": 20, "file_created": 2, "file_deleted": 0.5, "commit_created": 10,
    "commit_pushed": 6, "build_succeeded": 8, "build_failed": 2, "test_passed": 10,
    "test_failed": 2, "pr_created": 1.5, "pr_merged": 1.2, "pr_closed": 0.3, "pr_reviewed": 2.5,
    "pr_commented": 3, "llm_request_submitted": 8, "llm_request_completed": 7,
    "llm_request_failed": 0.8, "context_switch": 5, "focus_session_started": 1.5,
    "focus_session_ended": 1.5, "gate_evaluated": 2, "policy_violation": 0.2,
    "override_attempted": 0.1,
}
_PR_TYPES = ("pr_created", "pr_merged", "pr_closed", "pr_reviewed", "pr_commented")
_OFFSETS = (0, 0, 60, 120, -300, -420, 330, 540)  # minutes
_SERVICES = ("ide-plugin", "ci", "git", "llm-gateway", "code-review")


def analysed_payload(signal_type: str, rng: random.Random, people: Sequence[str]
                     ) -> dict[str, Any]:
    """The payload keys the analytics read, as a producer would send them for the type:
    durations, outcomes, work items, and a counterpart (one of ``people``) for PR events."""
    payload: dict[str, Any] = {}
    if signal_type.startswith(("build_", "test_", "llm_", "focus_", "gate_")):
        payload["duration_ms"] = rng.randint(20, 900_000)
    if signal_type.endswith(("_failed", "_succeeded", "_passed")) \
            or signal_type == "gate_evaluated":
        payload["outcome"] = signal_type.rsplit("_", 1)[-1]
    if rng.random() < 0.5:
        payload["work_item_id"] = f"PROJ-{rng.randint(1, 4000)}"
    if signal_type in _PR_TYPES:
        payload["counterpart_actor_id"] = people[rng.randrange(len(people))]
    return payload


def _iso(ts: datetime, offset_min: int) -> str:
    """ISO 8601 with ``Z`` for UTC, else with the given offset (kept by ingestion)."""
    if offset_min == 0:
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return ts.astimezone(timezone(timedelta(minutes=offset_min))).isoformat(
        timespec="milliseconds")


def envelope_fragments(tenant: str, n: int, *, actors: int, days: float, seed: int
                       ) -> list[bytes]:
    """``n`` serialised envelopes of ``tenant`` without their ``signal_id``.

    Each fragment is a JSON object with its opening brace removed, so that
    ``b'{"signal_id":"…",' + fragment`` is a complete envelope.
    """
    import orjson

    rng = random.Random(seed)
    people = [f"{tenant}:user-{rng.getrandbits(48):012x}" for _ in range(actors)]
    kinds = rng.choices(["human", "ai_agent", "service"], weights=[75, 20, 5], k=actors)
    kind_label = {"human": ("human", "person", "user"), "ai_agent": ("ai_agent", "agent", "llm"),
                  "service": ("service", "automated")}
    teams = [f"team-{i // 8:03d}" for i in range(actors)]
    types = list(TYPE_WEIGHTS)
    weights = list(TYPE_WEIGHTS.values())
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        a = rng.randrange(actors)
        st = rng.choices(types, weights)[0]
        occurred = now - timedelta(seconds=rng.uniform(60, days * 86400))
        offset = rng.choice(_OFFSETS)
        payload = analysed_payload(st, rng, people)
        if st in _PR_TYPES:
            payload["pr_number"] = rng.randint(1, 30_000)  # not allowed: dropped, audited
        if st.startswith("commit_"):
            payload.update(files_changed=rng.randint(1, 40), insertions=rng.randint(0, 800),
                           deletions=rng.randint(0, 300))  # not allowed by default
        if st.startswith("llm_"):
            payload.update(model="gpt-x", prompt_tokens=rng.randint(50, 8000),
                           completion_tokens=rng.randint(10, 2000))
        resource: dict[str, Any] = {
            "repo": f"{tenant}/repo-{rng.randrange(30)}", "branch": rng.choice(
                ["main", "main", f"feature/{rng.randrange(500)}"]),
            "service_name": rng.choice(_SERVICES),
            "actor_type": rng.choice(kind_label[kinds[a]]), "team_id": teams[a],
        }
        if st.startswith("file_"):
            resource["file_path"] = f"src/module_{rng.randrange(200)}/file_{rng.randrange(50)}.py"
            resource["module"] = f"module_{rng.randrange(200)}"
        if rng.random() < 0.01:
            resource["privacy_tags"] = ["contains_PI"]
        env = {
            "tenant_id": tenant, "actor_id": people[a], "signal_kind": "event",
            "signal_type": st, "occurred_at": _iso(occurred, offset),
            "ingested_at": _iso(occurred + timedelta(seconds=rng.uniform(0.5, 30)), 0),
            "schema_version": "1.0", "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "resource": resource, "payload": payload, "producer_id": "bench-loader",
            "sequence_no": rng.randint(1, 10**9),
        }
        out.append(orjson.dumps(env)[1:])
    return out


def batch_body(fragments: list[bytes], start: int, size: int) -> bytes:
    """A ``{"events": [...]}`` body of ``size`` envelopes with fresh unique signal ids."""
    head = str(uuid.uuid4())[:32].encode()
    n = len(fragments)
    parts = [b'{"signal_id":"' + head + b"%04x" % i + b'",' + fragments[(start + i) % n]
             for i in range(size)]
    return b'{"events":[' + b",".join(parts) + b"]}"


# --- load processes --------------------------------------------------------------------------

@dataclass
class LoadSpec:
    """What one load process does (picklable: it crosses a spawn)."""

    index: int
    processes: int
    base_url: str
    tokens: dict[str, str]
    batch_size: int
    #: batches/s for this process; 0 = as fast as back-pressure allows
    rate: float
    threads: int
    max_queued: int
    actors: int
    days: float
    seed: int
    pool_size: int = 4000


@dataclass
class SendRecord:
    """One batch as the load process saw it (times are ``time.time()``)."""

    k: int
    tenant: str
    due: float
    sent: float
    answered: float
    status: int
    attempts: int
    batch_id: str | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


@dataclass
class LoadResult:
    index: int
    records: list[SendRecord] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    build_s: float = 0.0


def load_process(spec: LoadSpec, ready: Any, results: Any, go: Any, clock: Any,
                 queued: Any) -> None:
    """Entry point of a load process: build envelope pools, wait for ``go``, send batches.

    ``clock`` holds [start, stop] (``time.time()``); ``queued`` is the ingest queue depth the
    parent keeps sampling (back-pressure in max-throughput mode).
    """
    import requests

    # Ctrl-C reaches the whole foreground process group: the parent stops the load processes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tenants = sorted(spec.tokens)
    pools = {t: envelope_fragments(t, spec.pool_size, actors=spec.actors, days=spec.days,
                                   seed=spec.seed * 1000 + spec.index * 100 + i)
             for i, t in enumerate(tenants)}
    result = LoadResult(spec.index)
    lock = threading.Lock()
    counter = itertools.count()
    ready.put(spec.index)
    go.wait()
    start, stop = clock[0], clock[1]
    url = f"{spec.base_url}/events"

    def sender() -> None:
        session = requests.Session()
        headers = {t: {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
                   for t, tok in spec.tokens.items()}
        records: list[SendRecord] = []
        errors: Counter[str] = Counter()
        build = 0.0
        while True:
            with lock:
                k = next(counter)
            if spec.rate > 0:
                due = start + (k + spec.index / spec.processes) / spec.rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
            else:
                due = time.time()
                while spec.max_queued > 0 and queued.value > spec.max_queued \
                        and time.time() < stop:
                    time.sleep(0.005)
            if time.time() >= stop:
                break
            tenant = tenants[(k * spec.processes + spec.index) % len(tenants)]
            t = time.perf_counter()
            body = batch_body(pools[tenant], (k * 997) % spec.pool_size, spec.batch_size)
            build += time.perf_counter() - t
            sent = time.time()
            attempts = 0
            while True:
                attempts += 1
                try:
                    resp = session.post(url, data=body, headers=headers[tenant], timeout=120)
                except requests.RequestException as exc:
                    errors[f"connection:{type(exc).__name__}"] += 1
                    status, payload = 0, None
                else:
                    status = resp.status_code
                    payload = resp.content
                if status == 202 or (status not in (0, 503)) or time.time() > stop + 30:
                    break
                errors[str(status) if status else "retried"] += 1
                time.sleep(0.2)  # 503 / connection error: the same body again (idempotent)
            answered = time.time()
            rec = SendRecord(k, tenant, due, sent, answered, status, attempts)
            if status == 202 and payload is not None:
                import orjson

                doc = orjson.loads(payload)
                summary = doc["summary"]
                rec.batch_id = doc["batch_id"]
                rec.accepted = summary["accepted"]
                rec.duplicates = summary["duplicates"]
                rec.rejected = summary["rejected"]
            elif status != 202:
                errors[f"final:{status}"] += 1
            records.append(rec)
        with lock:
            result.records.extend(records)
            result.errors.update(errors)
            result.build_s += build

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(spec.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results.put(result)


# --- measurement -----------------------------------------------------------------------------

#: Tables ingestion updates in place (what autovacuum would vacuum during a run).
UPDATED_TABLES = ("daily_rollups", "daily_interactions", "daily_work_items", "dirty_subjects",
                  "batches", "ingestion_state", "task_outbox", "tenant_days")

_SAMPLE_SQL = """
SELECT coalesce(sum(accepted) FILTER (WHERE status IN ('queued', 'processing')), 0),
       count(*) FILTER (WHERE status IN ('queued', 'processing')),
       coalesce(sum(inserted) FILTER (WHERE status = 'done'), 0),
       count(*) FILTER (WHERE status = 'failed')
FROM batches
"""


def _batch_counts(engine: Any) -> tuple[int, int, int, int]:
    """``_SAMPLE_SQL``'s four counts (bigints)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        counts: tuple[int, int, int, int] = conn.execute(sa.text(_SAMPLE_SQL)).one()
    return counts


def _backends(engine: Any, db_name: str) -> list[int]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return [int(p) for p in conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
            {"d": db_name}).scalars()]


def copy_benchmark(database_url: str, rows: int, *, chunk: int = 50_000) -> dict[str, Any]:
    """Bare psycopg COPY of ``rows`` rows of ``events`` into unpartitioned scratch tables.

    The rows are read back from ``events`` (untimed) and written with ``Copy.write_row``,
    JSONB columns wrapped in ``Jsonb`` exactly as ``ubi.store.bulk.copy_rows`` does; one
    COPY per chunk, one transaction, timed from the first row to the commit.
    """
    import psycopg
    from psycopg.types.json import Jsonb

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    out: dict[str, Any] = {}
    with psycopg.connect(url) as src, psycopg.connect(url) as dst:
        cols = src.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'events' AND table_schema = current_schema() "
            "ORDER BY ordinal_position").fetchall()
        names = [c for c, _ in cols]
        json_idx = {i for i, (_, t) in enumerate(cols) if t in ("jsonb", "json")}
        col_sql = ", ".join(f'"{c}"' for c in names)
        dst.execute("CREATE TABLE bench_scratch (LIKE events INCLUDING DEFAULTS)")
        dst.execute("CREATE TABLE bench_scratch_indexed (LIKE events INCLUDING ALL)")
        dst.commit()
        for table, key in (("bench_scratch", "copy"), ("bench_scratch_indexed", "copy_indexed")):
            elapsed = 0.0
            copied = 0
            with src.cursor(name=f"bench_read_{key}") as cur:
                cur.execute(f"SELECT {col_sql} FROM events LIMIT %s", (rows,))
                while True:
                    batch = cur.fetchmany(chunk)
                    if not batch:
                        break
                    t = time.perf_counter()
                    with dst.cursor() as dcur, dcur.copy(
                            f"COPY {table} ({col_sql}) FROM STDIN") as copy:
                        for row in batch:
                            copy.write_row([Jsonb(v) if i in json_idx else v
                                            for i, v in enumerate(row)])
                    elapsed += time.perf_counter() - t
                    copied += len(batch)
            src.commit()
            t = time.perf_counter()
            dst.commit()
            elapsed += time.perf_counter() - t
            out[f"{key}_rows"] = copied
            out[f"{key}_s"] = round(elapsed, 3)
            out[f"{key}_events_per_s"] = round(copied / elapsed) if elapsed > 0 else None
    return out


def _parse_timings(log_path: Path) -> dict[str, Any]:
    """Mean / p95 of the worker's ``batch stored`` ``timings_ms`` per stage."""
    stages: dict[str, list[float]] = {}
    batches = 0
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        if '"batch stored"' not in line:
            continue
        try:
            doc = json.loads(line[line.index("{"):])
        except ValueError:
            continue
        timings = doc.get("timings_ms")
        if not isinstance(timings, dict):
            continue
        batches += 1
        for k, v in timings.items():
            stages.setdefault(k, []).append(float(v))
    return {"batches": batches, **{
        k: {"mean_ms": round(statistics.fmean(v), 2), "p95_ms": _r(percentile(v, 0.95), 2)}
        for k, v in stages.items()}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, drive the load, measure; returns the figures."""
    import sqlalchemy as sa

    tenants = [f"bench-t{i}" for i in range(args.tenants)]
    worker_env = {"UBI_LOG_LEVEL": "INFO"} if args.timings else None
    figures: dict[str, Any] = {}
    reference_before = h.cpu_reference_ms()
    with h.BenchStack(admin_url=args.pg_admin_url, broker_url=args.broker_url,
                      redis_url=args.redis_url, keep=args.keep) as stack:
        base = stack.start_web(workers=args.web_workers, threads=args.web_threads)
        worker = stack.start_worker("ingest", concurrency=args.worker_concurrency,
                                    env=worker_env)
        web = next(p for p in stack.processes if p.name == "gunicorn")
        tokens = {t: stack.token(t, "ubi:write:events") for t in tenants}
        rate_per_proc = (args.rate / args.batch_size / args.load_processes) if args.rate else 0.0
        threads = args.load_threads

        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        clock = ctx.Array("d", [0.0, 0.0], lock=False)
        queued = ctx.Value("i", 0, lock=False)
        procs = [ctx.Process(target=load_process, daemon=True, args=(
            LoadSpec(i, args.load_processes, base, tokens, args.batch_size, rate_per_proc,
                     threads, args.max_queued if not args.rate else 0, args.actors, args.days,
                     args.seed), ready, results, go, clock, queued))
            for i in range(args.load_processes)]
        engine = stack.sql_engine()
        probe = h.QueueProbe(args.broker_url, stack.queue_name("ingest"))
        autovacuum, analyze_every = h.analyze_every(args)
        analyzer = h.PeriodicAnalyze(stack.database_url, analyze_every, vacuum=UPDATED_TABLES)
        pyspy: list[subprocess.Popen[bytes]] = []
        try:
            for p in procs:
                p.start()
            for _ in procs:
                ready.get(timeout=120)

            def pg_backends() -> list[int]:
                return _backends(engine, stack.db_name)

            meter = h.CpuMeter({
                "load": lambda: [pid for p in procs if p.pid for pid in h.process_tree(p.pid)],
                "web": lambda: h.process_tree(web.pid),
                "worker": lambda: h.process_tree(worker.pid),
                "postgres_run_db": pg_backends,
                "postgres_all": lambda: h.pids_by_name("postgres"),
                "rabbitmq": lambda: h.pids_by_name("beam.smp"),
                "bench": lambda: [os.getpid()],
            }, overlapping=("postgres_run_db",))
            t0 = time.time()
            window_start = t0 + args.warmup
            stop = window_start + args.duration
            clock[0], clock[1] = t0, stop
            go.set()
            analyzer.start()

            samples: list[tuple[float, int, int, int, int, int]] = []
            max_queue = 0
            meter_started = False
            next_db = 0.0
            while time.time() < stop:
                now = time.time()
                depth, _ = probe.depth()
                queued.value = depth
                max_queue = max(max_queue, depth)
                if not meter_started and now >= window_start:
                    meter.start()
                    meter_started = True
                    if args.py_spy:
                        pyspy = _start_py_spy(args.py_spy, {"web": web.pid,
                                                             "worker": worker.pid},
                                              args.duration)
                if now >= next_db:
                    backlog, pending, stored, failed = _batch_counts(engine)
                    samples.append((now, int(backlog), int(pending), int(stored), int(failed),
                                    depth))
                    next_db = now + args.sample_interval
                    stack.check_alive()
                time.sleep(0.05 if not args.rate else 0.1)
            cpu = meter.stop() if meter_started else {}
            queued.value = 0
            analyzer.stop()

            load_results: list[LoadResult] = []
            for _ in procs:
                load_results.append(results.get(timeout=300))
            for p in procs:
                p.join(timeout=30)
            load_end = time.time()

            # Drain: wait until everything accepted is stored (or failed, or time runs out).
            drain_deadline = load_end + args.drain_timeout
            while True:
                now = time.time()
                backlog, pending, stored, failed = _batch_counts(engine)
                depth, _ = probe.depth()
                max_queue = max(max_queue, depth)
                samples.append((now, int(backlog), int(pending), int(stored), int(failed),
                                depth))
                if pending == 0 or now > drain_deadline:
                    break
                stack.check_alive()
                time.sleep(args.sample_interval)
            drained_s = time.time() - load_end
            for sp in pyspy:
                try:
                    sp.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    sp.terminate()

            with engine.connect() as conn:
                batch_rows = conn.execute(sa.text(
                    "SELECT batch_id, status, accepted, inserted, stored_duplicates, "
                    "extract(epoch from created_at), extract(epoch from started_at), "
                    "extract(epoch from finished_at), attempts FROM batches")).all()
                events_rows: int = conn.execute(
                    sa.text("SELECT count(*) FROM events")).scalar_one()
                key_rows: int = conn.execute(
                    sa.text("SELECT count(*) FROM event_keys")).scalar_one()
                rollup_rows = conn.execute(sa.text(
                    "SELECT count(*), coalesce(sum(event_count), 0) FROM daily_rollups")).one()
            figures = _figures(args, load_results, batch_rows, samples, window_start, stop,
                               max_queue, drained_s)
            figures.update(cpu=cpu, events_rows=int(events_rows), event_keys_rows=int(key_rows),
                           rollup_rows=int(rollup_rows[0]),
                           rollup_event_count=int(rollup_rows[1]))
            figures["lost_events"] = figures["accepted_events_total"] - int(events_rows)
            if args.timings:
                figures["worker_timings_ms"] = _parse_timings(worker.log_path)
            if args.py_spy:
                figures["py_spy"] = str(Path(args.py_spy).resolve())
        finally:
            go.set()
            analyzer.stop()
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=10)
            for sp in pyspy:
                if sp.poll() is None:
                    sp.terminate()
            probe.close()
            engine.dispose()
        # The processes stop before the COPY: it measures the database alone.
        for proc in list(stack.processes):
            proc.stop()
        stack.processes.clear()
        if not args.no_copy:
            n = args.copy_rows or int(figures["events_rows"])
            figures.update(copy_benchmark(stack.database_url, n))
            if figures.get("copy_events_per_s"):
                figures["stored_vs_copy"] = round(
                    figures["stored_events_per_s"] / figures["copy_events_per_s"], 3)
    reference = {"before": reference_before, "after": h.cpu_reference_ms()}
    figures["settings"] = {
        "mode": f"offered {args.rate} events/s" if args.rate else (
            f"max throughput (back-pressure at {args.max_queued} queued batches)"
            if args.max_queued else "max throughput (flood, no back-pressure)"),
        "duration_s": args.duration, "warmup_s": args.warmup, "batch_size": args.batch_size,
        "tenants": args.tenants, "actors_per_tenant": args.actors, "days": args.days,
        "load_processes": args.load_processes, "load_threads_per_process": threads,
        "web_workers": args.web_workers, "web_threads": args.web_threads,
        "worker_concurrency": args.worker_concurrency, "timings_log": args.timings,
        "server_autovacuum": autovacuum, "analyze_every_s": analyze_every,
        "analyze_runs": analyzer.runs, "analyze_s": round(analyzer.seconds, 2),
        "analyze_server_cpu_s": round(analyzer.cpu_s, 2),
        "py_spy": bool(args.py_spy), "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_reference_ms": reference,
    }
    return figures


def _start_py_spy(outdir: str, pids: dict[str, int], duration: float
                  ) -> list[subprocess.Popen[bytes]]:
    path = Path(outdir)
    path.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen(
        [str(exe if exe.exists() else "py-spy"), "record", "--nonblocking", "--subprocesses",
         "-r", "50", "-f", "raw", "-d", str(int(duration)), "-p", str(pid),
         "-o", str(path / f"{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]


def _figures(args: argparse.Namespace, load_results: list[LoadResult],
             batch_rows: Sequence[Any],
             samples: list[tuple[float, int, int, int, int, int]], window_start: float,
             window_end: float, max_queue: int, drained_s: float) -> dict[str, Any]:
    records = [r for res in load_results for r in res.records]
    errors: Counter[str] = Counter()
    for res in load_results:
        errors.update(res.errors)
    window = window_end - window_start
    by_id = {row[0]: row for row in batch_rows}
    ok = [r for r in records if r.status == 202]
    in_window = [r for r in ok if window_start <= r.answered < window_end]
    accepted_window = sum(r.accepted for r in in_window)
    accepted_total = sum(r.accepted for r in ok)

    stored_window = sum(int(row[3] or 0) for row in batch_rows
                        if row[1] == "done" and row[7] is not None
                        and window_start <= float(row[7]) < window_end)
    done = [row for row in batch_rows if row[1] == "done" and row[7] is not None]
    stored_total = sum(int(row[3] or 0) for row in done)
    first_created = min((float(row[5]) for row in batch_rows), default=window_start)
    last_finished = max((float(row[7]) for row in done), default=window_end)

    lat, lat_server, wait, proc, http = [], [], [], [], []
    lag = []
    for r in in_window:
        http.append(r.answered - r.sent)
        lag.append(r.sent - r.due)
        row = by_id.get(r.batch_id)
        if row is None or row[1] != "done" or row[7] is None:
            continue
        created, started, finished = float(row[5]), float(row[6] or row[5]), float(row[7])
        lat.append(max(0.0, finished - r.answered))
        lat_server.append(finished - created)
        wait.append(started - created)
        proc.append(finished - started)
    window_samples = [s for s in samples if window_start <= s[0] < window_end]
    unfinished = sum(1 for r in ok if r.batch_id not in by_id
                     or by_id[r.batch_id][1] not in ("done",))
    return {
        "accepted_events_per_s": round(accepted_window / window),
        "stored_events_per_s": round(stored_window / window),
        "p50_accept_to_stored_s": _r(percentile(lat, 0.5)),
        "p95_accept_to_stored_s": _r(percentile(lat, 0.95)),
        "max_backlog": max((s[1] for s in samples), default=0),
        "copy_events_per_s": None,
        "offered_events_per_s": args.rate or None,
        "stored_events_per_s_with_drain": round(
            stored_total / max(last_finished - first_created, 1e-9)),
        "p99_accept_to_stored_s": _r(percentile(lat, 0.99)),
        "max_accept_to_stored_s": _r(max(lat, default=None) if lat else None),
        "p50_server_accept_to_stored_s": _r(percentile(lat_server, 0.5)),
        "p95_server_accept_to_stored_s": _r(percentile(lat_server, 0.95)),
        "p50_queue_wait_s": _r(percentile(wait, 0.5)),
        "p95_queue_wait_s": _r(percentile(wait, 0.95)),
        "p50_batch_processing_s": _r(percentile(proc, 0.5)),
        "p95_batch_processing_s": _r(percentile(proc, 0.95)),
        "p50_http_202_s": _r(percentile(http, 0.5)),
        "p95_http_202_s": _r(percentile(http, 0.95)),
        "p95_send_lag_s": _r(percentile(lag, 0.95)) if args.rate else None,
        "mean_backlog_in_window": round(statistics.fmean(s[1] for s in window_samples))
        if window_samples else None,
        "backlog_at_window_end": window_samples[-1][1] if window_samples else None,
        "max_queue_messages": max_queue,
        "drain_s": round(drained_s, 2),
        "batches_sent": len(records), "batches_accepted": len(ok),
        "batches_in_window": len(in_window), "batches_unfinished": unfinished,
        "batches_failed": sum(1 for row in batch_rows if row[1] == "failed"),
        "redelivered_batches": sum(1 for row in batch_rows if (row[8] or 0) > 1),
        "accepted_events_total": accepted_total, "stored_events_total": stored_total,
        "duplicates_reported": sum(r.duplicates for r in ok),
        "rejected_reported": sum(r.rejected for r in ok),
        "http_503": int(errors.get("503", 0)),
        "http_errors": {k: v for k, v in errors.items() if k != "503"},
        "load_build_body_s": round(sum(res.build_s for res in load_results), 2),
    }


def _print_summary(f: dict[str, Any]) -> None:
    s = f["settings"]
    fmt = h.fmt

    print(f"ingest benchmark ({s['mode']}), {s['duration_s']} s window after "
          f"{s['warmup_s']} s warm-up, {s['cpus']} CPUs, {s['date']}")
    print(f"  web: gunicorn {s['web_workers']}x{s['web_threads']} gthread; worker: ingest "
          f"--concurrency {s['worker_concurrency']}; load: {s['load_processes']} processes x "
          f"{s['load_threads_per_process']} threads, batches of {s['batch_size']}, "
          f"{s['tenants']} tenants x {s['actors_per_tenant']} actors")
    print(f"  accepted          {fmt(f['accepted_events_per_s'])} events/s"
          + (f"   (offered {f['offered_events_per_s']:,})" if f["offered_events_per_s"] else ""))
    print(f"  stored            {fmt(f['stored_events_per_s'])} events/s   "
          f"(with drain {fmt(f['stored_events_per_s_with_drain'])}; target >= 20,000)")
    print(f"  accept->stored    p50 {fmt(f['p50_accept_to_stored_s'])} s   "
          f"p95 {fmt(f['p95_accept_to_stored_s'])} s   p99 {fmt(f['p99_accept_to_stored_s'])} s"
          "   (target p95 < 1 s at 5,000/s)")
    print(f"    queue wait      p50 {fmt(f['p50_queue_wait_s'])} s   "
          f"p95 {fmt(f['p95_queue_wait_s'])} s;  processing p50 "
          f"{fmt(f['p50_batch_processing_s'])} s   p95 {fmt(f['p95_batch_processing_s'])} s")
    print(f"  HTTP 202          p50 {fmt(f['p50_http_202_s'])} s   "
          f"p95 {fmt(f['p95_http_202_s'])} s"
          + (f";  send lag p95 {fmt(f['p95_send_lag_s'])} s" if f["p95_send_lag_s"] is not None
             else ""))
    print(f"  backlog           max {fmt(f['max_backlog'])} events   mean "
          f"{fmt(f['mean_backlog_in_window'])}   at end {fmt(f['backlog_at_window_end'])}   "
          f"queue max {f['max_queue_messages']} messages;  drained in {f['drain_s']} s")
    if f.get("copy_events_per_s"):
        print(f"  bare COPY         {f['copy_events_per_s']:,} events/s "
              f"({f['copy_rows']:,} rows, unindexed scratch);  with PK + index "
              f"{fmt(f.get('copy_indexed_events_per_s'))} events/s;  stored/COPY = "
              f"{f['stored_vs_copy']}")
    print(f"  totals            {f['accepted_events_total']:,} accepted, "
          f"{f['stored_events_total']:,} stored, {f['events_rows']:,} rows in events, "
          f"lost {f['lost_events']:,};  batches {f['batches_accepted']:,} "
          f"(unfinished {f['batches_unfinished']}, failed {f['batches_failed']}, redelivered "
          f"{f['redelivered_batches']});  503s {f['http_503']}, other errors "
          f"{f['http_errors'] or 0}")
    h.print_cpu(f.get("cpu", {}))
    h.print_reference(s)
    timings = f.get("worker_timings_ms")
    if timings:
        stages = ", ".join(f"{k} {v['mean_ms']}" for k, v in timings.items()
                           if isinstance(v, dict))
        print(f"  worker timings    mean ms per batch over {timings['batches']} batches: "
              f"{stages}")


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or "ingest benchmark"
    p = argparse.ArgumentParser(prog="ubi bench ingest", description=doc.splitlines()[0])
    h.add_load_arguments(p, warmup=5.0, days=3.0, load_processes=2, load_threads=2,
                         sample_interval=0.5)
    p.add_argument("--max-queued", type=int, default=4,
                   help="max-throughput back-pressure: hold off while more batch messages "
                   "wait in the ingest queue (0 = flood)")
    p.add_argument("--worker-concurrency", type=int, default=3,
                   help="ingest worker processes (the Procfile runs 3)")
    p.add_argument("--copy-rows", type=int, default=0,
                   help="rows for the COPY comparison (default: as many as were stored)")
    p.add_argument("--no-copy", action="store_true", help="skip the COPY comparison")
    p.add_argument("--timings", action="store_true",
                   help="worker logs at INFO and its per-stage timings_ms are reported")
    p.add_argument("--py-spy", metavar="DIR", default="",
                   help="record collapsed-stack profiles of web and worker into DIR")
    return p


def main(argv: list[str] | None = None) -> int:
    return h.load_main(build_parser(), argv, run, _print_summary)


__all__ = ["LoadSpec", "batch_body", "copy_benchmark", "envelope_fragments", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())

