"""Benchmark of one features step run (``compute_tenant_features``) on a pipeline-like tenant.

The pipeline benchmark's figures depend on everything sharing the machine (web, ingest, the
load generator, PostgreSQL); this one isolates the step whose cost limits it. In a fresh
database (created, migrated, dropped at the end) one tenant receives the pipeline benchmark's
envelopes (``--actors`` actors, ``occurred_at`` over the last ``--days`` days, batches of
``--batch-size``) through ``ingest.store_batch``, and every ``--every`` batches the features
step runs, as a worker would under that load; the database is analysed after the first
batches, as the pipeline benchmark's periodic ANALYZE does. Figures per run, averaged over
the runs after the first ``--skip``: wall time, the process's CPU, the CPU of its PostgreSQL
backend (from ``/proc``), the dirty pairs taken and the values written, and per phase (the
step's calls, timed from outside) its wall time, process CPU (``_cpu``) and PostgreSQL CPU
(``_pg``).

``--history-days N`` gives the tenant a past first: the first batch's rollup rows copied to
each of the N days before it (not dirty), as a tenant that has sent events for months has.

Usage: ``ubi bench features_step [--actors 400] [--batches 60] [--every 3]
[--history-days 120] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks import _harness
from benchmarks.ingest import batch_body, envelope_fragments

#: (module, function) of the step's phases, timed by wrapping them.
PHASES = [("ubi.services.features", "pending_dirty"),
          ("ubi.services.focus_time", "refresh_focus"),
          ("ubi.services.features", "load_activity"),
          ("ubi.services.features", "incomplete_days"),
          ("ubi.services.features", "compute_features"),
          ("ubi.store.features", "write"),
          ("ubi.services.features", "release_dirty")]


def _backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local process (a PostgreSQL backend)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(phases: dict[str, float], name: str, fn: Callable[..., Any],
           backend: list[int]) -> Callable[..., Any]:
    """``fn`` adding its wall time to ``phases[name]``, its process CPU to ``name_cpu`` and
    the CPU of the PostgreSQL backend ``backend[0]`` (when set) to ``name_pg``. /proc counts
    CPU in clock ticks (10 ms): a phase's figure is only meaningful as a mean over runs."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t, cpu = time.perf_counter(), time.process_time()
        pg = _backend_cpu_s(backend[0]) if backend else 0.0
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
            phases[f"{name}_cpu"] = phases.get(f"{name}_cpu", 0.0) + time.process_time() - cpu
            if backend:
                phases[f"{name}_pg"] = (phases.get(f"{name}_pg", 0.0)
                                        + _backend_cpu_s(backend[0]) - pg)
    return wrapper


def run(args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    import orjson

    from ubi.analytics.privacy import Pseudonymiser
    from ubi.models.session import reset_engines, session_factory
    from ubi.services import databases, features, ingest, schema
    from ubi.settings import load_settings

    admin = os.environ.get("UBI_BENCH_PG_ADMIN_URL", _harness.DEFAULT_PG_ADMIN_URL)
    name = f"ubi_bench_{uuid.uuid4().hex[:10]}"
    databases.create_database(admin, name)
    settings = load_settings({"DATABASE_URL": databases.database_url(admin, name),
                              "CELERY_BROKER_URL": "memory://", "UBI_PSEUDONYM_SECRET": "bench",
                              "UBI_JWT_SECRET": "bench",
                              "UBI_RECEIPT_SIGNING_KEY": _harness.signing_key_pem()})
    phases: dict[str, float] = {}
    backend: list[int] = []  # the measured run's PostgreSQL backend, while it runs
    for module_name, fn_name in PHASES:
        module = importlib.import_module(module_name)
        if hasattr(module, fn_name):  # (an older tree may lack one)
            setattr(module, fn_name, _timed(phases, fn_name, getattr(module, fn_name),
                                            backend))
    runs: list[dict[str, float]] = []
    try:
        schema.upgrade(settings)
        make_session = session_factory(settings)
        pseudonymiser = Pseudonymiser(settings.pseudonym_secret)
        tenant = "bench-t0"
        fragments = envelope_fragments(tenant, 20_000, actors=args.actors, days=args.days,
                                       seed=args.seed)
        for i in range(args.batches):
            events = orjson.loads(batch_body(fragments, i * args.batch_size,
                                             args.batch_size))["events"]
            with make_session() as s:
                ingest.store_batch(s, batch_id=str(uuid.uuid4()), tenant_id=tenant,
                                   events_json=orjson.dumps(events).decode(),
                                   received_at=datetime.now(UTC), correlation_id=f"c{i}",
                                   pseudonymiser=pseudonymiser)
                s.commit()
            if i == 0 and args.history_days:
                with make_session() as s:
                    _add_history(s, tenant, args.history_days)
                    s.commit()
            if i == args.every:  # what autovacuum (or the pipeline benchmark) does early on
                with make_session() as s:
                    s.connection().exec_driver_sql("ANALYZE")
                    s.commit()
            if (i + 1) % args.every:
                continue
            phases.clear()
            cpu = time.process_time()
            with make_session() as s:
                pid: int = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                pg_cpu = _backend_cpu_s(pid)
                backend.append(pid)
                t = time.perf_counter()
                outcome = features.compute_tenant_features(s, tenant)
                s.commit()
                wall = time.perf_counter() - t
                pg_cpu = _backend_cpu_s(pid) - pg_cpu
                backend.clear()
            runs.append({"wall_ms": wall * 1000, "cpu_ms": (time.process_time() - cpu) * 1000,
                         "postgres_cpu_ms": pg_cpu * 1000, "dirty_pairs": outcome.dirty,
                         "values_written": outcome.rows,
                         **{f"{k}_ms": v * 1000 for k, v in phases.items()}})
    finally:
        reset_engines()
        databases.drop_database(admin, name)
    kept = runs[args.skip:]
    keys = sorted({k for r in kept for k in r}, key=lambda k: -statistics.fmean(
        r.get(k, 0.0) for r in kept))
    return {"runs": len(kept), "mean": {k: round(statistics.fmean(r.get(k, 0.0) for r in kept), 1)
                                        for k in keys},
            "median_wall_ms": round(statistics.median(r["wall_ms"] for r in kept), 1),
            "settings": {"actors": args.actors, "days": args.days, "batches": args.batches,
                         "batch_size": args.batch_size, "every": args.every, "skip": args.skip,
                         "history_days": args.history_days,
                         "date": datetime.now(UTC).isoformat(timespec="seconds"),
                         "cpu_reference_ms": _harness.cpu_reference_ms()}}


#: The rollup tables ``--history-days`` extends into the past.
HISTORY_TABLES = ("daily_rollups", "daily_interactions", "daily_work_items", "daily_focus")


def _add_history(session: Any, tenant: str, days: int) -> None:
    """The tenant's rows so far copied to each of the ``days`` days before its first day, so
    that the step reads a tenant with a past (windows of 28 days, latest teams) rather than
    one born 1.5 days ago. Stored directly, not marked dirty: history already computed."""
    import sqlalchemy as sa

    conn = session.connection()
    for table in HISTORY_TABLES:
        cols = [c["name"] for c in sa.inspect(conn).get_columns(table)]
        select = ", ".join("r.day - g" if c == "day" else f'r."{c}"' for c in cols)
        conn.exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} r, "
            f"generate_series(1, %(n)s) g, (SELECT min(day) AS first FROM {table} "
            f"WHERE tenant_id = %(t)s) f WHERE r.tenant_id = %(t)s "
            f"AND r.day - g < f.first ON CONFLICT DO NOTHING", {"t": tenant, "n": days})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=400)
    parser.add_argument("--days", type=float, default=1.5)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--every", type=int, default=3, help="batches between two runs")
    parser.add_argument("--skip", type=int, default=3, help="first runs left out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history-days", type=int, default=0,
                        help="days of past rollups before the first batch's (copies of it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
        return 0
    s = figures["settings"]
    print(f"features step: 1 tenant x {s['actors']} actors over {s['days']:g} days, a run "
          f"every {s['every']} batches of {s['batch_size']}; mean of {figures['runs']} runs "
          f"(median wall {figures['median_wall_ms']} ms)")
    for key, value in figures["mean"].items():
        print(f"  {key:<26} {value:10,.1f}")
    print(f"  cpu_reference_ms {s['cpu_reference_ms']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
