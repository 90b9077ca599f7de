"""Read API benchmark (issue 17): actor profile, team summary and signal query under load.

One tenant (``bench``) of ``--actors`` actors in ``--teams`` teams with ``--events`` events over
``--days`` days is generated and loaded through the real ingest path, in process, on the run's
own database (``benchmarks._harness.BenchStack``):

- the envelopes are generated day by day (realistic shapes: the ingest benchmark's type weights,
  payload and resource keys, work items, counterparts; humans in working hours with weekends
  quiet, agents around the clock; per-actor volume spread and day-to-day noise; a few actors
  surge over the last days so that detection has something to say), sorted by time and cut into
  ``--batch-size`` batches;
- each batch is one ``ubi.services.ingest.store_batch`` call in its own transaction, as the
  ingest worker does, with the shared clock (``UBI_CLOCK_FILE``, ``UBI_DEV_MODE=1``) pinned to
  the morning after the batch's day (so every batch is "yesterday's" events arriving);
- after every ``--features-every`` days (default 7), ``features.compute_tenant_features`` (the
  features step of the pipeline: it computes every dirty (actor, day) pair, so the feature rows
  are those of a daily run; daily runs cost about 6 s each at 1,000 actors) with the clock at
  that morning; every 10 days and at the end, ``ANALYZE`` (the server's autovacuum is off on
  the development machine: docs/benchmarks.md);
- at the end, with the clock at the morning after the last day, ``detection.detect_tenant`` (the
  nightly detection: baselines, scores and signals of the days it evaluates), then
  ``VACUUM (ANALYZE)``.

Then gunicorn (project config, ``--web-workers`` x ``--web-threads``) serves the database on a
free loopback port, with the clock pinned (frozen) to noon of the day after the generated range
and the API rate limits off (``UBI_RATE_LIMIT_ENABLED=0``: 8 clients of one tenant would
otherwise hit ``UBI_RATE_LIMIT_READ_TENANT``, 200/second). ``--clients`` threads, each with a
keep-alive ``http.client`` connection (a light client: it shares the server's cores) and a
token with every read role, rotate over the three endpoints (actors, teams and time ranges
drawn at random) for ``--duration`` seconds after a ``--warmup``:

- ``GET /actors/{id}/profile?tenant_id=bench&window=7d``;
- ``GET /teams/{team}/summary?tenant_id=bench`` (window 7d, the default);
- ``POST /query/signals`` with a 7-day ``time_range`` ending within the last 28 days, page 50.

Figures per endpoint: count, errors (non-200 or exceptions), p50 / p95 / p99 ms, requests/s.
Then, in process (Flask test client on the same database), one request of each endpoint with
SQLAlchemy's ``before_cursor_execute`` capturing its SQL, and ``EXPLAIN (ANALYZE, BUFFERS)`` of
each captured SELECT with its real parameters; the plans of the slowest endpoint (by p95) are
printed.

Loading is the expensive part: ``--keep-db NAME`` keeps the database ``ubi_bench_NAME`` after
the run, ``--reuse-db NAME`` measures an existing one again (its scale and secrets are read
from the ``bench_api_meta`` table the load writes; no load).

Usage::

    ubi bench api [--actors 1000 --teams 50 --days 90 --events 10000000] [--clients 8]
                  [--duration 60] [--keep-db NAME | --reuse-db NAME] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h
from benchmarks._harness import percentile
from benchmarks._harness import rounded as _r
from benchmarks.ingest import _SERVICES, TYPE_WEIGHTS, analysed_payload

TENANT = "bench"
ENDPOINTS = ("profile", "team_summary", "signal_query")
READ_ROLES = ("ubi:read:actor", "ubi:read:team", "ubi:read:tenant")
META_TABLE = "bench_api_meta"
#: Requests of each endpoint in a row, in process: their p50 and this process's CPU per request.
IN_PROCESS_REQUESTS = 50


# --- data ------------------------------------------------------------------------------------

@dataclass
class Population:
    """The tenant's actors: ids, teams, kinds, volume weights, working hours."""

    actor_ids: list[str]
    teams: list[str]
    kinds: list[str]
    weight: np.ndarray
    start_hour: np.ndarray
    surging: np.ndarray

    @classmethod
    def make(cls, actors: int, teams: int, seed: int) -> Population:
        rng = np.random.default_rng(seed)
        kinds = ["ai_agent" if i % 10 == 9 else "human" for i in range(actors)]
        return cls(
            actor_ids=[f"user-{i:05d}" for i in range(actors)],
            teams=[f"team-{i % teams:03d}" for i in range(actors)],
            kinds=kinds,
            weight=rng.lognormal(0.0, 0.5, actors),
            start_hour=rng.uniform(6.0, 10.0, actors),
            surging=rng.random(actors) < 0.02,
        )


def day_batches(pop: Population, day: date, n: int, batch_size: int, seed: int,
                days_left: int) -> list[str]:
    """The ``n`` envelopes of ``day`` in time order, as JSON arrays of ``batch_size``."""
    import orjson

    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    human = np.array([k == "human" for k in pop.kinds])
    w = pop.weight * rng.lognormal(0.0, 0.3, len(pop.weight))
    if day.weekday() >= 5:
        w = np.where(human, w * 0.08, w)
    if days_left < 5:  # the last days: a few actors surge
        w = np.where(pop.surging, w * 4.0, w)
    actor = rng.choice(len(w), size=n, p=w / w.sum())
    span = np.where(human[actor], 9.0, 24.0)
    start = np.where(human[actor], pop.start_hour[actor], 0.0)
    seconds = np.clip((start + rng.random(n) * span) * 3600.0, 0, 86399.0)
    order = np.argsort(seconds, kind="stable")
    types = list(TYPE_WEIGHTS)
    tw = np.array(list(TYPE_WEIGHTS.values()))
    type_idx = rng.choice(len(types), size=n, p=tw / tw.sum())
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    label = {"human": "human", "ai_agent": "ai_agent"}
    out: list[str] = []
    batch: list[dict[str, Any]] = []
    for k, j in enumerate(order.tolist()):
        a = int(actor[j])
        st = types[int(type_idx[j])]
        occurred = midnight + timedelta(seconds=float(seconds[j]))
        payload = analysed_payload(st, prng, pop.actor_ids)
        batch.append({
            "signal_id": f"{seed:08x}-{k:08d}", "tenant_id": TENANT,
            "actor_id": pop.actor_ids[a], "signal_kind": "event", "signal_type": st,
            "occurred_at": occurred.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ingested_at": (occurred + timedelta(seconds=2)).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "schema_version": "1.0", "producer_id": "bench-api-loader",
            "resource": {"repo": f"{TENANT}/repo-{a % 30}", "branch": "main",
                         "service_name": _SERVICES[a % len(_SERVICES)],
                         "actor_type": label[pop.kinds[a]], "team_id": pop.teams[a]},
            "payload": payload, "sequence_no": k + 1,
        })
        if len(batch) == batch_size:
            out.append(orjson.dumps(batch).decode())
            batch = []
    if batch:
        out.append(orjson.dumps(batch).decode())
    return out


def load(stack: h.BenchStack, clock_path: Path, *, actors: int, teams: int, days: int,
         events: int, end_day: date, batch_size: int, seed: int, features_every: int,
         progress: bool) -> dict[str, Any]:
    """Generate and store the tenant's events through the real services; the load figures."""
    import sqlalchemy as sa

    from ubi import clock
    from ubi.analytics.privacy import Pseudonymiser
    from ubi.models.session import session_factory
    from ubi.services import detection, features, ingest

    settings = stack.settings
    factory = session_factory(settings)
    alias = Pseudonymiser(settings.pseudonym_secret)
    pop = Population.make(actors, teams, seed)
    start_day = end_day - timedelta(days=days - 1)
    day_weight = np.array([0.15 if (start_day + timedelta(days=d)).weekday() >= 5 else 1.0
                           for d in range(days)])
    per_day = np.floor(events * day_weight / day_weight.sum()).astype(int)
    per_day[-1] += events - int(per_day.sum())
    gen_s = store_s = features_s = analyze_s = 0.0
    inserted = 0
    t_all = time.perf_counter()

    def analyze() -> float:
        t = time.perf_counter()
        with stack.sql_engine(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql("ANALYZE")
        return time.perf_counter() - t

    for d in range(days):
        day = start_day + timedelta(days=d)
        morning = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=1)
        clock.set_shared_clock(clock_path, morning, ticking=False)
        t = time.perf_counter()
        bodies = day_batches(pop, day, int(per_day[d]), batch_size, seed * 100_000 + d,
                             days - 1 - d)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        for j, body in enumerate(bodies):
            with factory() as s:
                outcome = ingest.store_batch(
                    s, batch_id=f"load-{day.isoformat()}-{j:05d}", tenant_id=TENANT,
                    events_json=body, received_at=morning, correlation_id=None,
                    pseudonymiser=alias, today=morning.date())
                s.commit()
            inserted += outcome.inserted
        store_s += time.perf_counter() - t
        if d % features_every == features_every - 1 or d == days - 1:
            t = time.perf_counter()
            with factory() as s:
                features.compute_tenant_features(s, TENANT, now=morning)
                s.commit()
            features_s += time.perf_counter() - t
        if d % 10 == 9:
            analyze_s += analyze()
        if progress:
            done = time.perf_counter() - t_all
            print(f"  loaded {day} ({d + 1}/{days}): {inserted:,} events, {done:.0f} s "
                  f"(store {store_s:.0f}, features {features_s:.0f})", flush=True)
    analyze_s += analyze()
    after = datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC) + timedelta(
        days=1, hours=6)
    clock.set_shared_clock(clock_path, after, ticking=False)
    t = time.perf_counter()
    with factory() as s:
        detected = detection.detect_tenant(s, TENANT, now=after)
        s.commit()
    detect_s = time.perf_counter() - t
    t = time.perf_counter()
    with stack.sql_engine(isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")
    vacuum_s = time.perf_counter() - t
    total_s = time.perf_counter() - t_all
    with stack.sql_engine().begin() as conn:
        counts = {name: int(conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())
                  for name in ("events", "daily_rollups", "feature_days", "baselines", "scores",
                               "signals")}
    return {
        "load_path": "in-process ingest.store_batch per batch (one transaction each), "
                     f"features.compute_tenant_features every {features_every} days, "
                     "detection.detect_tenant at the end",
        "events_generated": int(per_day.sum()), "events_stored": inserted,
        "batch_size": batch_size, "generate_s": round(gen_s, 1), "store_s": round(store_s, 1),
        "store_events_per_s": round(inserted / store_s) if store_s else None,
        "features_s": round(features_s, 1), "analyze_s": round(analyze_s, 1),
        "detect_s": round(detect_s, 1), "vacuum_analyze_s": round(vacuum_s, 1),
        "total_s": round(total_s, 1),
        "evaluated": [str(detected.evaluated_from), str(detected.evaluated_through)],
        "rows": counts,
    }


# --- database reuse --------------------------------------------------------------------------

def write_meta(stack: h.BenchStack, meta: dict[str, Any]) -> None:
    import sqlalchemy as sa

    with stack.sql_engine().begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (doc jsonb NOT NULL)")
        conn.exec_driver_sql(f"DELETE FROM {META_TABLE}")
        conn.execute(sa.text(f"INSERT INTO {META_TABLE} (doc) VALUES (CAST(:d AS jsonb))"),
                     {"d": json.dumps(meta)})


def read_meta(admin_url: str, db_name: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from ubi.services.databases import database_url

    engine = sa.create_engine(database_url(admin_url, db_name), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return dict(conn.exec_driver_sql(f"SELECT doc FROM {META_TABLE}").scalar_one())
    except sa.exc.SQLAlchemyError as exc:
        raise SystemExit(f"{db_name} is not a database `ubi bench api --keep-db` loaded: "
                         f"{exc.__class__.__name__}") from exc
    finally:
        engine.dispose()


# --- load ------------------------------------------------------------------------------------

@dataclass
class Client:
    """One client thread's results: (endpoint, seconds, ok) per request in the window."""

    results: list[tuple[str, float, bool]] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # the thread's CPU in the window


def client_loop(i: int, base: str, token: str, pop_ids: list[str], teams: list[str],
                end_day: date, start_at: float, stop_at: float, out: Client) -> None:
    # http.client on one keep-alive connection: the load generator shares the server's cores,
    # and ``requests`` cost about a quarter of the machine at 8 clients (its own Python per
    # request); this costs a fraction of that, so the figures are the server's.
    from urllib.parse import urlencode, urlsplit

    url = urlsplit(base)
    prefix = url.path
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    json_headers = {**headers, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    rng = random.Random(i)
    k = i
    cpu_at_start: float | None = None
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if now >= start_at and cpu_at_start is None:
            cpu_at_start = time.thread_time()
        endpoint = ENDPOINTS[k % len(ENDPOINTS)]
        k += 1
        t = time.perf_counter()
        ok = False
        try:
            if endpoint == "profile":
                query = urlencode({"tenant_id": TENANT, "window": "7d"})
                conn.request("GET", f"{prefix}/actors/{rng.choice(pop_ids)}/profile?{query}",
                             headers=headers)
            elif endpoint == "team_summary":
                conn.request("GET", f"{prefix}/teams/{rng.choice(teams)}/summary?tenant_id="
                             f"{TENANT}", headers=headers)
            else:
                last = end_day - timedelta(days=rng.randrange(28))
                conn.request("POST", f"{prefix}/query/signals", headers=json_headers,
                             body=json.dumps({"tenant_id": TENANT, "page_size": 50,
                                              "time_range": {"from": str(last - timedelta(days=6)),
                                                             "to": str(last)}}))
            resp = conn.getresponse()
            body = resp.read()
            ok = resp.status == 200
            if not ok and len(out.error_samples) < 5:
                out.error_samples.append(f"{endpoint} {resp.status} {body[:200]!r}")
        except Exception as exc:  # counted as an error, sampled; a new connection next
            conn.close()
            if len(out.error_samples) < 5:
                out.error_samples.append(f"{endpoint} {exc!r}"[:300])
        elapsed = time.perf_counter() - t
        if now >= start_at:
            out.results.append((endpoint, elapsed, ok))
    out.cpu_s = time.thread_time() - cpu_at_start if cpu_at_start is not None else 0.0
    conn.close()


def measure(base: str, token: str, pop: Population, end_day: date, *, clients: int,
            duration: float, warmup: float, web_pid: int | None = None) -> dict[str, Any]:
    start_at = time.monotonic() + warmup
    stop_at = start_at + duration
    outs = [Client() for _ in range(clients)]
    teams = sorted(set(pop.teams))
    workers = [p for p in h.process_tree(web_pid) if p != web_pid] if web_pid else []
    workers_cpu0 = h.cpu_seconds(workers)
    # Where the machine's CPU went: the web workers, PostgreSQL, the clients (this process).
    meter = h.CpuMeter({"web": lambda: workers, "postgres": lambda: h.pids_by_name("postgres"),
                        "clients": lambda: [os.getpid()]})
    meter.start()
    threads = [threading.Thread(target=client_loop, args=(
        i, base, token, pop.actor_ids, teams, end_day, start_at, stop_at, outs[i]),
        daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    cpu = meter.stop()
    workers_cpu1 = h.cpu_seconds(workers)
    figures: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        rows = [r for o in outs for r in o.results if r[0] == endpoint]
        good = sorted(1000.0 * s for _, s, ok in rows if ok)
        figures[endpoint] = {
            "count": len(rows), "errors": sum(1 for r in rows if not r[2]),
            "p50_ms": _r(percentile(good, 0.50), 1), "p95_ms": _r(percentile(good, 0.95), 1),
            "p99_ms": _r(percentile(good, 0.99), 1), "max_ms": _r(good[-1] if good else None, 1),
            "req_per_s": round(len(rows) / duration, 1),
        }
    figures["machine_busy_pct"] = cpu["machine_busy_pct"]
    figures["cpu"] = cpu
    served = sum(figures[e]["count"] for e in ENDPOINTS)
    # CPU per request, all endpoints together: what a throughput target has to fit in.
    figures["cpu_ms_per_request"] = {
        k[:-6]: round(1000.0 * v / served, 2) if served else None for k, v in cpu.items()
        if k.endswith("_cpu_s") and k not in ("machine_busy_cpu_s", "steal_cpu_s")}
    # gthread workers accept keep-alive connections first come, first served, so a run's
    # connections can land mostly on one worker (one GIL for most requests): shown per run.
    figures["web_workers_cpu_s"] = sorted(
        (round(workers_cpu1[p] - workers_cpu0[p], 1) for p in workers_cpu1 if p in workers_cpu0),
        reverse=True)
    figures["client_threads_cpu_s"] = round(sum(o.cpu_s for o in outs), 1)
    figures["error_samples"] = [e for o in outs for e in o.error_samples][:5]
    return figures


# --- query plans -----------------------------------------------------------------------------

def explain_endpoints(stack: h.BenchStack, token: str, pop: Population, end_day: date
                      ) -> dict[str, list[dict[str, Any]]]:
    """Each endpoint's SELECTs (one request, in process) with ``EXPLAIN (ANALYZE, BUFFERS)``."""
    import sqlalchemy as sa

    from ubi.web.app import create_app

    app = create_app(stack.settings)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                _executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    last = end_day - timedelta(days=3)
    requests_by_endpoint: dict[str, tuple[str, str, dict[str, Any]]] = {
        "profile": ("get", f"/v1/ubi/actors/{pop.actor_ids[1]}/profile",
                    {"query_string": {"tenant_id": TENANT, "window": "7d"}}),
        "team_summary": ("get", f"/v1/ubi/teams/{pop.teams[1]}/summary",
                         {"query_string": {"tenant_id": TENANT}}),
        "signal_query": ("post", "/v1/ubi/query/signals", {"json": {
            "tenant_id": TENANT, "page_size": 50,
            "time_range": {"from": str(last - timedelta(days=6)), "to": str(last)}}}),
    }
    plans: dict[str, list[dict[str, Any]]] = {}
    engine = stack.sql_engine()
    with app.test_client() as client:
        for endpoint, (method, url, kw) in requests_by_endpoint.items():
            captured.clear()
            sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
            try:
                resp = getattr(client, method)(url, headers={"Authorization": f"Bearer {token}"},
                                               **kw)
            finally:
                sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
            out: list[dict[str, Any]] = []
            with engine.connect() as conn:
                for statement, params in captured:
                    rows: list[str] = list(conn.exec_driver_sql(
                        f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params).scalars())
                    conn.rollback()
                    text = "\n".join(rows)
                    m = re.search(r"Execution Time: ([0-9.]+) ms", text)
                    out.append({"sql": " ".join(statement.split())[:400],
                                "execution_ms": float(m.group(1)) if m else None,
                                "plan": text})
            # Service time without concurrency or HTTP: the same request, in process.
            times = []
            cpu = time.process_time()
            for _ in range(IN_PROCESS_REQUESTS):
                t = time.perf_counter()
                getattr(client, method)(url, headers={"Authorization": f"Bearer {token}"}, **kw)
                times.append(1000.0 * (time.perf_counter() - t))
            cpu_ms = 1000.0 * (time.process_time() - cpu) / IN_PROCESS_REQUESTS
            plans[endpoint] = [{"status": resp.status_code,
                                "in_process_p50_ms": _r(percentile(sorted(times), 0.5), 2),
                                "in_process_cpu_ms": _r(cpu_ms, 2),
                                "sql_ms": _r(sum(p["execution_ms"] or 0.0 for p in out), 2)},
                               *out]
    engine.dispose()
    return plans


# --- run -------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    name = args.reuse_db or args.keep_db
    meta: dict[str, Any] = {}
    if args.reuse_db:
        meta = read_meta(h.DEFAULT_PG_ADMIN_URL, f"ubi_bench_{args.reuse_db}")
    clock_dir = Path(tempfile.mkdtemp(prefix="ubi-bench-api-clock-"))
    clock_path = clock_dir / "clock.json"
    secrets = meta.get("secrets") or {
        "UBI_PSEUDONYM_SECRET": "bench-api-pseudonym-" + os.urandom(8).hex(),
        "UBI_JWT_SECRET": "bench-api-jwt-" + os.urandom(24).hex()}
    extra = {**secrets, "UBI_DEV_MODE": "1", "UBI_CLOCK_FILE": str(clock_path),
             "UBI_RATE_LIMIT_ENABLED": "0"}
    stack_kw: dict[str, Any] = {"extra_env": extra, "keep": bool(args.keep_db),
                                "reuse": bool(args.reuse_db)}
    if name:
        stack_kw["run_id"] = name
    saved_env = dict(os.environ)
    try:
        with h.BenchStack(**stack_kw) as stack:
            # This process runs the services too (load, plans): the stack's settings, its clock.
            os.environ.update(stack.env)
            from ubi import clock
            from ubi.settings import get_settings

            get_settings.cache_clear()
            if args.reuse_db:
                scale = meta["scale"]
                end_day = date.fromisoformat(meta["end_day"])
                load_figures = {**meta["load"], "reused_database": stack.db_name}
            else:
                scale = {"actors": args.actors, "teams": args.teams, "days": args.days,
                         "events": args.events, "seed": args.seed}
                end_day = datetime.now(UTC).date() - timedelta(days=2)
                load_figures = load(stack, clock_path, actors=args.actors, teams=args.teams,
                                    days=args.days, events=args.events, end_day=end_day,
                                    batch_size=args.batch_size, seed=args.seed,
                                    features_every=args.features_every,
                                    progress=not args.json)
                if args.keep_db:
                    write_meta(stack, {"scale": scale, "end_day": str(end_day),
                                       "load": load_figures, "secrets": secrets})
            pop = Population.make(scale["actors"], scale["teams"], scale["seed"])
            served_at = datetime(end_day.year, end_day.month, end_day.day, 12, tzinfo=UTC) \
                + timedelta(days=1)
            clock.set_shared_clock(clock_path, served_at, ticking=False)
            base = stack.start_web(workers=args.web_workers, threads=args.web_threads)
            token = stack.token(TENANT, *READ_ROLES, sub="bench-reader")
            reference_before = h.cpu_reference_ms()
            figures = measure(base, token, pop, end_day, clients=args.clients,
                              duration=args.duration, warmup=args.warmup,
                              web_pid=next(p.pid for p in reversed(stack.processes)
                                           if p.name == "gunicorn"))
            reference = {"before": reference_before, "after": h.cpu_reference_ms()}
            stack.check_alive()
            plans = explain_endpoints(stack, token, pop, end_day)
            slowest = max(ENDPOINTS, key=lambda e: figures[e]["p95_ms"] or 0.0)
            return {
                "scale": scale, "end_day": str(end_day), "clock": served_at.isoformat(),
                "database": stack.db_name, "kept": bool(args.keep_db or args.reuse_db),
                "load": load_figures,
                "settings": {"clients": args.clients, "duration_s": args.duration,
                             "warmup_s": args.warmup, "web_workers": args.web_workers,
                             "web_threads": args.web_threads, "rate_limits": "off",
                             "cpu_reference_ms": reference},
                **{e: figures[e] for e in ENDPOINTS},
                "machine_busy_pct": figures["machine_busy_pct"],
                "web_workers_cpu_s": figures["web_workers_cpu_s"],
                "client_threads_cpu_s": figures["client_threads_cpu_s"],
                "cpu": figures["cpu"], "cpu_ms_per_request": figures["cpu_ms_per_request"],
                "error_samples": figures["error_samples"],
                "slowest_endpoint": slowest,
                "plans": plans,
            }
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(clock_dir, ignore_errors=True)


def _print(f: dict[str, Any]) -> None:
    s, ld = f["scale"], f["load"]
    print(f"read API: {s['actors']:,} actors in {s['teams']} teams, {s['days']} days to "
          f"{f['end_day']}, {ld['events_stored']:,} events (database {f['database']}"
          f"{', kept' if f['kept'] else ''})")
    if "reused_database" in ld:
        print("  load: reused (figures of the original load below)")
    print(f"  load: {ld['total_s']:.0f} s in all; store_batch {ld['store_s']:.0f} s "
          f"({ld['store_events_per_s']:,} events/s, batches of {ld['batch_size']:,}), "
          f"features {ld['features_s']:.0f} s, detection {ld['detect_s']:.0f} s, generation "
          f"{ld['generate_s']:.0f} s, ANALYZE {ld['analyze_s']:.0f} s, VACUUM ANALYZE "
          f"{ld['vacuum_analyze_s']:.0f} s")
    print(f"  rows: {', '.join(f'{k} {v:,}' for k, v in ld['rows'].items())}")
    st = f["settings"]
    print(f"  {st['clients']} clients, {st['duration_s']} s after {st['warmup_s']} s warm-up; "
          f"gunicorn {st['web_workers']}x{st['web_threads']}; rate limits off; clock "
          f"{f['clock']}; machine {f['machine_busy_pct']} % busy; web workers' CPU s "
          f"{f['web_workers_cpu_s']}")
    h.print_cpu(f["cpu"])
    print("  CPU ms per request " + ", ".join(
        f"{k} {v}" for k, v in f["cpu_ms_per_request"].items()))
    h.print_reference(f["settings"])
    print(f"  {'endpoint':<14}{'count':>8}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}"
          f"{'p99 ms':>9}{'req/s':>8}")
    for e in ENDPOINTS:
        r = f[e]
        print(f"  {e:<14}{r['count']:>8}{r['errors']:>8}{r['p50_ms'] or 0:>9.1f}"
              f"{r['p95_ms'] or 0:>9.1f}{r['p99_ms'] or 0:>9.1f}{r['req_per_s']:>8.1f}")
    for sample in f["error_samples"]:
        print(f"  error: {sample}")
    slowest = f["slowest_endpoint"]
    print(f"\nquery plans of the slowest endpoint ({slowest}), one request in process:")
    for p in f["plans"][slowest][1:]:
        print(f"\n-- {p['execution_ms']} ms: {p['sql'][:300]}")
        print(p["plan"])
    print()
    for e in ENDPOINTS:
        head = f["plans"][e][0]
        times = ", ".join(f"{p['execution_ms']}" for p in f["plans"][e][1:])
        print(f"{e}: in process (Flask test client, no concurrency, {IN_PROCESS_REQUESTS} in a row)"
              " "
              f"p50 {head['in_process_p50_ms']} ms, CPU {head['in_process_cpu_ms']} ms of this "
              f"process; its {len(f['plans'][e]) - 1} SELECTs "
              f"{head['sql_ms']} ms in all ({times})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--features-every", type=int, default=7, metavar="DAYS",
                        help="run the features step after every DAYS loaded days (1: daily, "
                             "as the pipeline; it costs seconds per call at 1,000 actors)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keep-db", metavar="NAME",
                       help="keep the loaded database as ubi_bench_NAME for --reuse-db")
    group.add_argument("--reuse-db", metavar="NAME",
                       help="measure ubi_bench_NAME (loaded with --keep-db NAME) again")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for value in (args.keep_db, args.reuse_db):
        if value is not None and not re.fullmatch(r"[a-z0-9_]{1,40}", value):
            raise SystemExit("database names: lowercase letters, digits and _")
    figures = run(args)
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        with contextlib.suppress(BrokenPipeError):
            _print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
