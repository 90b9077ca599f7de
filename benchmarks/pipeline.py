"""Pipeline benchmark: POST /v1/ubi/events → ingest → features → detect, sustained.

Runs the real processes on the run's own resources (``benchmarks._harness.BenchStack``: its
own database, queue prefix and temp dir, all removed at the end): gunicorn with the project's
config, ``ubi worker ingest`` and ``ubi worker pipeline`` (the ``features`` and ``detect``
queues). Load processes post 1,000-event batches of the realistic envelopes of
``benchmarks.ingest`` (several tenants of hundreds of actors, the whole taxonomy, keys to
minimise), with ``occurred_at`` over the last ``--days`` days, so that the features step has
today's and yesterday's windows to refresh and detection evaluates the day that closed.

When are a batch's events "in features"? Ingestion marks every (actor, day) it touched dirty,
in the same transaction that stores the batch, and a dirty row keeps the time of its oldest
pending change (``marked_at``); the features step deletes the rows it claimed in the same
transaction that upserts the features. So a stored batch's events are in stored features as
soon as its tenant has no dirty row marked at or before the batch's ``finished_at``. A sampler
checks that every ``--sample-interval`` seconds (the figures' resolution).

Modes: ``--rate EVENTS_PER_S`` offers load open loop; the default is max throughput, closed
loop: senders hold off while more than ``--max-pending`` batches are accepted but not yet in
features (back-pressure on the whole path, so the figure is what the slowest stage sustains).
The closed loop caps what one features run can absorb at ``--max-pending`` batches, so its
figure is partly the load generator's; ``--sweep`` finds the pipeline's own limit: open-loop
runs at rising offered rates (each on a fresh stack), ``--sweep-factor`` apart, then
``--sweep-refine`` bisections between the last rate sustained and the first not, and reports
the highest sustained as ``max_sustained_events_per_s``. A rate is sustained when the load
generator offered it (else the sweep stops: the generator, not the pipeline, is the limit), no
batch was refused or lost, and the backlog stayed bounded: over the window it grew by less
than ``BACKLOG_GROWTH_SHARE`` of the offered rate (least squares over the samples). A
pipeline with a fixed delay per run has a constant backlog, which is bounded; the p95
accept -> features says how long the delay is.
With ``--ingest-max`` (the stored events/s ``ubi bench ingest`` measured just before on the
same machine) it reports ``features_to_ingest_ratio``.

Figures (``--json``: one object): ``events_per_s`` (events of batches that reached features in
the window, per second), ``p50/p95_accept_to_features_s`` (client's receipt of the 202 → the
sample that saw the batch in features), ``p50/p95_accept_to_detected_s`` (→ the sample that saw
detection owe nothing for it: the batch in features and its tenant without a ``groups`` mark of
``feature_refresh`` older than that; the features step marks the closed days it writes,
detection's run recomputes their team, cohort and tenant features and releases the marks),
``max_backlog`` (accepted events not yet in features), plus accepted events/s, accept → stored,
queue depths of ``ingest``, ``features`` and ``detect``, what detection produced, and CPU
seconds per component.

Usage::

    ubi bench pipeline [--json] [--duration 60] [--rate 3000] ...
    ubi bench pipeline --sweep [--sweep-start 1000] [--ingest-max 22000] ...
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks import _harness as h
from benchmarks._harness import percentile
from benchmarks._harness import rounded as _r
from benchmarks.ingest import UPDATED_TABLES, LoadResult, LoadSpec, load_process

_BATCHES_SQL = ("SELECT batch_id, tenant_id, status, accepted, "
                "extract(epoch from finished_at) FROM batches")
_DIRTY_SQL = ("SELECT tenant_id, extract(epoch from min(marked_at)), count(*) "
              "FROM dirty_subjects GROUP BY tenant_id")
#: What detection still owes per tenant: the oldest day marked for its team, cohort and tenant
#: features (events that arrived for a closed day after detection read it).
_OWED_SQL = ("SELECT tenant_id, extract(epoch from min(marked_at)) FROM feature_refresh "
             "WHERE kind = 'groups' GROUP BY tenant_id")


class Tracker:
    """Follows every batch from acceptance to stored to "in features" by sampling the DB."""

    def __init__(self) -> None:
        #: batch_id -> (tenant, accepted events, status, finished_at epoch or None)
        self.batches: dict[str, tuple[str, int, str, float | None]] = {}
        #: batch_id -> sample time at which the batch was first seen in features
        self.in_features: dict[str, float] = {}
        #: batch_id -> sample time at which detection first owed nothing for it
        self.in_detection: dict[str, float] = {}
        self.samples: list[dict[str, Any]] = []

    def sample(self, conn: Any, queue_depths: dict[str, int]) -> dict[str, Any]:
        import sqlalchemy as sa

        for bid, tenant, status, accepted, finished in conn.execute(sa.text(_BATCHES_SQL)):
            self.batches[bid] = (tenant, int(accepted or 0), status,
                                 None if finished is None else float(finished))
        # The dirty rows are read after the batches: a batch seen done above has its dirty
        # rows committed with it, so they are visible here unless features already took them.
        t = time.time()
        dirty = {tenant: (float(oldest), int(n))
                 for tenant, oldest, n in conn.execute(sa.text(_DIRTY_SQL))}
        backlog = pending = 0
        for bid, (tenant, accepted, status, finished) in self.batches.items():
            if bid in self.in_features:
                continue
            if status == "done" and finished is not None and (
                    tenant not in dirty or dirty[tenant][0] > finished):
                self.in_features[bid] = t
                continue
            if status != "failed":
                backlog += accepted
                pending += 1
        # Detection's part: the features step marks the closed days it wrote for the groups
        # (keeping the oldest mark's time), detection releases them. A batch in features is
        # through detection once its tenant has no mark older than when it reached features.
        owed = {tenant: float(oldest) for tenant, oldest in conn.execute(sa.text(_OWED_SQL))}
        for bid, seen in self.in_features.items():
            if bid not in self.in_detection:
                tenant = self.batches[bid][0]
                if tenant not in owed or owed[tenant] > seen:
                    self.in_detection[bid] = t
        sample = {"t": t, "backlog_events": backlog, "pending_batches": pending,
                  "dirty_pairs": sum(n for _, n in dirty.values()), **queue_depths}
        self.samples.append(sample)
        return sample


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, drive the load, follow every batch; returns the figures."""
    import sqlalchemy as sa

    tenants = [f"bench-t{i}" for i in range(args.tenants)]
    tracker = Tracker()
    figures: dict[str, Any] = {}
    reference_before = h.cpu_reference_ms()
    with h.BenchStack(admin_url=args.pg_admin_url, broker_url=args.broker_url,
                      redis_url=args.redis_url, keep=args.keep) as stack:
        base = stack.start_web(workers=args.web_workers, threads=args.web_threads)
        ingest = stack.start_worker("ingest", concurrency=args.ingest_concurrency)
        pipeline = stack.start_worker("pipeline", concurrency=args.pipeline_concurrency,
                                      queues=("features", "detect"))
        web = next(p for p in stack.processes if p.name == "gunicorn")
        tokens = {t: stack.token(t, "ubi:write:events") for t in tenants}
        rate_per_proc = (args.rate / args.batch_size / args.load_processes) if args.rate else 0.0

        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        clock = ctx.Array("d", [0.0, 0.0], lock=False)
        pending = ctx.Value("i", 0, lock=False)
        procs = [ctx.Process(target=load_process, daemon=True, args=(
            LoadSpec(i, args.load_processes, base, tokens, args.batch_size, rate_per_proc,
                     args.load_threads, 0 if args.rate else args.max_pending, args.actors,
                     args.days, args.seed), ready, results, go, clock, pending))
            for i in range(args.load_processes)]
        engine = stack.sql_engine()
        probes = {q: h.QueueProbe(args.broker_url, stack.queue_name(q))
                  for q in ("ingest", "features", "detect")}
        autovacuum, analyze_every = h.analyze_every(args)
        analyzer = h.PeriodicAnalyze(stack.database_url, analyze_every,
                                     vacuum=(*UPDATED_TABLES, "feature_days"))

        def sample() -> dict[str, Any]:
            depths = {f"{q}_queue": p.depth()[0] for q, p in probes.items()}
            with engine.connect() as conn:
                return tracker.sample(conn, depths)

        try:
            for p in procs:
                p.start()
            for _ in procs:
                ready.get(timeout=120)
            meter = h.CpuMeter({
                "load": lambda: [pid for p in procs if p.pid for pid in h.process_tree(p.pid)],
                "web": lambda: h.process_tree(web.pid),
                "ingest_worker": lambda: h.process_tree(ingest.pid),
                "pipeline_worker": lambda: h.process_tree(pipeline.pid),
                "postgres": lambda: h.pids_by_name("postgres"),
                "rabbitmq": lambda: h.pids_by_name("beam.smp"),
                "bench": lambda: [os.getpid()],
            })
            t0 = time.time()
            window_start = t0 + args.warmup
            stop = window_start + args.duration
            clock[0], clock[1] = t0, stop
            go.set()
            analyzer.start()
            meter_started = False
            while time.time() < stop:
                if not meter_started and time.time() >= window_start:
                    meter.start()
                    meter_started = True
                s = sample()
                pending.value = s["pending_batches"]
                stack.check_alive()
                time.sleep(args.sample_interval)
            cpu = meter.stop() if meter_started else {}
            pending.value = 0
            load_results: list[LoadResult] = [results.get(timeout=300) for _ in procs]
            for p in procs:
                p.join(timeout=30)
            load_end = time.time()
            # Drain: until every accepted batch is in features (or failed, or time is up).
            while True:
                s = sample()
                if s["pending_batches"] == 0 or time.time() > load_end + args.drain_timeout:
                    break
                stack.check_alive()
                time.sleep(args.sample_interval)
            drained_s = time.time() - load_end
            # Detection of the day that closed may still run, or still be owed: wait until
            # no message is queued, no follow-up waits in the outbox and no step holds its
            # tenant's lock, twice in a row (a step's follow-up is drained after it ends).
            quiet_deadline = time.time() + args.drain_timeout
            quiet = 0
            while time.time() < quiet_deadline and quiet < 2:
                with engine.connect() as conn:
                    busy: int = conn.execute(sa.text(
                        "SELECT (SELECT count(*) FROM task_outbox WHERE started_at IS NULL "
                        "AND dedupe_key IS NOT NULL) + (SELECT count(*) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND database = (SELECT oid FROM "
                        "pg_database WHERE datname = current_database()))")).scalar_one()
                busy += probes["detect"].depth()[0] + probes["features"].depth()[0]
                quiet = quiet + 1 if not busy else 0
                time.sleep(0.5)
            analyzer.stop()
            with engine.connect() as conn:
                produced = {name: int(conn.execute(sa.text(sql)).scalar_one()) for name, sql in {
                    "events_rows": "SELECT count(*) FROM events",
                    "feature_days": "SELECT count(*) FROM feature_days",
                    # Feature storage (table and indexes) per stored subject-day.
                    "feature_bytes_per_subject_day":
                        "SELECT pg_total_relation_size('feature_days') "
                        "/ greatest(count(*), 1) FROM feature_days",
                    "baseline_rows": "SELECT count(*) FROM baselines",
                    "anomalies": "SELECT count(*) FROM anomalies",
                    "signals": "SELECT count(*) FROM signals",
                    "tenants_evaluated": "SELECT count(*) FROM ingestion_state "
                                         "WHERE last_evaluated_day IS NOT NULL",
                    "failed_batches": "SELECT count(*) FROM batches WHERE status = 'failed'",
                }.items()}
            figures = _figures(args, load_results, tracker, window_start, stop)
            figures.update(produced, cpu=cpu, drain_s=round(drained_s, 2))
            figures["lost_events"] = figures["accepted_events_total"] - produced["events_rows"]
        finally:
            go.set()
            analyzer.stop()
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=10)
            for probe in probes.values():
                probe.close()
            engine.dispose()
    reference = {"before": reference_before, "after": h.cpu_reference_ms()}
    figures["settings"] = {
        "mode": f"offered {args.rate:g} events/s" if args.rate else
        f"max throughput (back-pressure at {args.max_pending} batches not yet in features)",
        "duration_s": args.duration, "warmup_s": args.warmup, "batch_size": args.batch_size,
        "tenants": args.tenants, "actors_per_tenant": args.actors, "days": args.days,
        "load_processes": args.load_processes, "load_threads_per_process": args.load_threads,
        "web_workers": args.web_workers, "web_threads": args.web_threads,
        "ingest_concurrency": args.ingest_concurrency,
        "pipeline_concurrency": args.pipeline_concurrency,
        "sample_interval_s": args.sample_interval, "server_autovacuum": autovacuum,
        "analyze_every_s": analyze_every, "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_reference_ms": reference,
    }
    return figures


def _figures(args: argparse.Namespace, load_results: list[LoadResult], tracker: Tracker,
             window_start: float, window_end: float) -> dict[str, Any]:
    records = [r for res in load_results for r in res.records]
    ok = [r for r in records if r.status == 202 and r.batch_id]
    window = window_end - window_start
    in_window = [r for r in ok if window_start <= r.answered < window_end]
    featured_in_window = sum(tracker.batches[b][1] for b, t in tracker.in_features.items()
                             if window_start <= t < window_end and b in tracker.batches)
    to_features, to_stored, to_detected = [], [], []
    for r in in_window:
        t = tracker.in_features.get(r.batch_id)  # type: ignore[arg-type]
        if t is not None:
            to_features.append(max(0.0, t - r.answered))
        t = tracker.in_detection.get(r.batch_id)  # type: ignore[arg-type]
        if t is not None:
            to_detected.append(max(0.0, t - r.answered))
        row = tracker.batches.get(r.batch_id)  # type: ignore[arg-type]
        if row is not None and row[3] is not None:
            to_stored.append(max(0.0, row[3] - r.answered))
    samples = tracker.samples
    window_samples = [s for s in samples if window_start <= s["t"] < window_end]
    errors: dict[str, int] = {}
    for res in load_results:
        for k, v in res.errors.items():
            errors[k] = errors.get(k, 0) + v
    return {
        "events_per_s": round(featured_in_window / window),
        "p50_accept_to_features_s": _r(percentile(to_features, 0.5)),
        "p95_accept_to_features_s": _r(percentile(to_features, 0.95)),
        "max_backlog": max((s["backlog_events"] for s in samples), default=0),
        "accepted_events_per_s": round(sum(r.accepted for r in in_window) / window),
        "offered_events_per_s": args.rate or None,
        "p99_accept_to_features_s": _r(percentile(to_features, 0.99)),
        "p50_accept_to_detected_s": _r(percentile(to_detected, 0.5)),
        "p95_accept_to_detected_s": _r(percentile(to_detected, 0.95)),
        "batches_in_window_not_detected": sum(
            1 for r in in_window if r.batch_id not in tracker.in_detection),
        "p50_accept_to_stored_s": _r(percentile(to_stored, 0.5)),
        "p95_accept_to_stored_s": _r(percentile(to_stored, 0.95)),
        "mean_backlog_in_window": round(statistics.fmean(
            s["backlog_events"] for s in window_samples)) if window_samples else None,
        "backlog_at_window_end": window_samples[-1]["backlog_events"] if window_samples
        else None,
        "backlog_growth_events_per_s": _r(statistics.linear_regression(
            [s["t"] for s in window_samples], [s["backlog_events"] for s in window_samples]
        ).slope) if len(window_samples) >= 2 else None,
        "max_dirty_pairs": max((s["dirty_pairs"] for s in samples), default=0),
        "max_queue_messages": {q: max((s[f"{q}_queue"] for s in samples), default=0)
                               for q in ("ingest", "features", "detect")},
        "batches_in_window": len(in_window),
        "batches_in_window_not_in_features": sum(
            1 for r in in_window if r.batch_id not in tracker.in_features),
        "accepted_events_total": sum(r.accepted for r in ok),
        "http_503": int(errors.get("503", 0)),
        "http_errors": {k: v for k, v in errors.items() if k != "503"},
    }


def _print_summary(f: dict[str, Any]) -> None:
    s = f["settings"]
    fmt = h.fmt

    print(f"pipeline benchmark ({s['mode']}), {s['duration_s']:g} s window after "
          f"{s['warmup_s']:g} s warm-up, {s['cpus']} CPUs, {s['date']}")
    print(f"  web: gunicorn {s['web_workers']}x{s['web_threads']}; workers: ingest "
          f"-c {s['ingest_concurrency']}, pipeline (features + detect) -c "
          f"{s['pipeline_concurrency']}; batches of {s['batch_size']}, {s['tenants']} tenants x "
          f"{s['actors_per_tenant']} actors over {s['days']:g} days")
    print(f"  through features  {fmt(f['events_per_s'])} events/s   (accepted "
          f"{fmt(f['accepted_events_per_s'])} events/s"
          + (f", offered {f['offered_events_per_s']:,g}" if f["offered_events_per_s"] else "")
          + ")")
    print(f"  accept->features  p50 {fmt(f['p50_accept_to_features_s'])} s   p95 "
          f"{fmt(f['p95_accept_to_features_s'])} s   p99 {fmt(f['p99_accept_to_features_s'])} s"
          f"   (resolution {s['sample_interval_s']} s)")
    print(f"  accept->stored    p50 {fmt(f['p50_accept_to_stored_s'])} s   p95 "
          f"{fmt(f['p95_accept_to_stored_s'])} s")
    print(f"  accept->detected  p50 {fmt(f['p50_accept_to_detected_s'])} s   p95 "
          f"{fmt(f['p95_accept_to_detected_s'])} s   (detection owes nothing for the batch; "
          f"{f['batches_in_window_not_detected']} of the window's batches not yet)")
    print(f"  backlog           max {fmt(f['max_backlog'])} events   mean "
          f"{fmt(f['mean_backlog_in_window'])}   at window end "
          f"{fmt(f['backlog_at_window_end'])};  max dirty (actor, day) "
          f"{fmt(f['max_dirty_pairs'])};  queue max {f['max_queue_messages']};  drained in "
          f"{f['drain_s']} s")
    print(f"  produced          {f['events_rows']:,} events, {f['feature_days']:,} feature "
          f"subject-days ({f['feature_bytes_per_subject_day']:,} B each), "
          f"{f['baseline_rows']:,} baselines, {f['anomalies']:,} anomalies, "
          f"{f['signals']:,} signals; {f['tenants_evaluated']} tenants evaluated; lost "
          f"{f['lost_events']:,}; failed batches {f['failed_batches']}; 503s {f['http_503']}, "
          f"other errors {f['http_errors'] or 0}")
    h.print_cpu(f.get("cpu", {}))
    h.print_reference(s)


#: A rate is sustained when the backlog grows by less than this share of it per second.
BACKLOG_GROWTH_SHARE = 0.1
#: The generator offered a rate when it got at least this share of it accepted.
OFFERED_SHARE = 0.95


def sustained(f: dict[str, Any], rate: float) -> tuple[bool, str]:
    """Whether one open-loop run at ``rate`` kept up, and why not."""
    if f["accepted_events_per_s"] < OFFERED_SHARE * rate:
        return False, (f"the load generator reached {f['accepted_events_per_s']:,} of "
                       f"{rate:,.0f} events/s")
    if f["http_503"] or f["http_errors"] or f["lost_events"] or f["failed_batches"]:
        return False, "batches refused, failed or lost"
    growth = f["backlog_growth_events_per_s"] or 0.0
    if growth > BACKLOG_GROWTH_SHARE * rate:
        return False, f"backlog grew {growth:,.0f} events/s"
    return True, "kept up"


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Open-loop runs at rising offered rates; the highest the pipeline sustained."""
    steps: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None

    def step(rate: float) -> bool:
        nonlocal best
        one = copy.copy(args)
        one.rate, one.sweep = rate, False
        f = run(one)
        ok, why = sustained(f, rate)
        steps.append({"offered_events_per_s": round(rate), "sustained": ok, "why": why,
                      **{k: f[k] for k in ("events_per_s", "accepted_events_per_s",
                                           "p95_accept_to_features_s", "backlog_at_window_end",
                                           "backlog_growth_events_per_s")}})
        if ok and (best is None or rate > best[0]):
            best = (rate, f)
        return ok

    rate, failed = args.sweep_start, None
    while rate <= args.sweep_max:
        if not step(rate):
            failed = rate
            break
        rate *= args.sweep_factor
    generator_bound = bool(steps) and steps[-1]["why"].startswith("the load generator")
    if failed is not None and best is not None and not generator_bound:
        low, high = best[0], failed
        for _ in range(args.sweep_refine):
            mid = (low + high) / 2
            if step(mid):
                low = mid
            else:
                high = mid
    figures: dict[str, Any] = {
        "max_sustained_events_per_s": round(best[0]) if best else 0,
        "limited_by": ("the load generator" if generator_bound else
                       "the pipeline" if failed is not None else
                       f"--sweep-max {args.sweep_max:g}"),
        "steps": steps,
        "at_max": best[1] if best else None,
    }
    if args.ingest_max:
        figures["ingest_max_events_per_s"] = args.ingest_max
        figures["features_to_ingest_ratio"] = round(
            figures["max_sustained_events_per_s"] / args.ingest_max, 3)
    return figures


def _print_sweep(f: dict[str, Any]) -> None:
    print("pipeline sweep (open loop, a fresh stack per rate)")
    print("  offered/s   accepted/s   into features/s   p95 accept->features   backlog at end")
    for s in f["steps"]:
        print(f"  {s['offered_events_per_s']:>9,}   {s['accepted_events_per_s']:>10,}   "
              f"{s['events_per_s']:>15,}   {h.fmt(s['p95_accept_to_features_s']):>17} s   "
              f"{s['backlog_at_window_end'] or 0:>14,}   {s['why']}")
    print(f"  max sustained {f['max_sustained_events_per_s']:,} events/s "
          f"(limited by {f['limited_by']})"
          + (f"; {f['features_to_ingest_ratio']} of the ingest path's "
             f"{f['ingest_max_events_per_s']:,g} stored events/s"
             if "features_to_ingest_ratio" in f else ""))
    if f["at_max"]:
        print("at the highest sustained rate:")
        _print_summary(f["at_max"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ubi bench pipeline",
                                description=(__doc__ or "pipeline benchmark").splitlines()[0])
    h.add_load_arguments(p, warmup=10.0, days=1.5, load_processes=1, load_threads=2,
                         sample_interval=0.2)
    p.add_argument("--max-pending", type=int, default=8,
                   help="max-throughput back-pressure: batches accepted, not yet in features")
    p.add_argument("--ingest-concurrency", type=int, default=3,
                   help="ingest worker processes (the Procfile runs 3)")
    p.add_argument("--pipeline-concurrency", type=int, default=2)
    p.add_argument("--sweep", action="store_true",
                   help="open-loop runs at rising rates: the highest sustained rate")
    p.add_argument("--sweep-start", type=float, default=1000.0, help="first offered events/s")
    p.add_argument("--sweep-factor", type=float, default=1.5, help="rate ratio between steps")
    p.add_argument("--sweep-max", type=float, default=100_000.0, help="highest rate offered")
    p.add_argument("--sweep-refine", type=int, default=2,
                   help="bisections between the last rate sustained and the first not")
    p.add_argument("--ingest-max", type=float, default=0.0,
                   help="stored events/s of `ubi bench ingest` on this machine (for the ratio)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if args.sweep:
        if args.sweep_start <= 0 or args.sweep_factor <= 1:
            print("--sweep-start must be positive and --sweep-factor above 1", file=sys.stderr)
            return 2
        return h.load_main(parser, argv, sweep, _print_sweep)
    return h.load_main(parser, argv, run, _print_summary)


__all__ = ["Tracker", "main", "run", "sweep"]

if __name__ == "__main__":
    sys.exit(main())
