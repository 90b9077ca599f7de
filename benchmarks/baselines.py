"""Benchmark of the nightly baseline recompute, end to end on PostgreSQL (SPEC §15).

A synthetic tenant of ``actors`` actors with ``days`` days of daily rollups (plus the 27 days
before them that the 28-day windows read) is written into a fresh database; then the service
the nightly task runs, ``ubi.services.baselines.recompute_baselines``, reads the rollups
(set-based), computes every scope's baselines (vectorised engine) and writes them in bulk.
Figures: ``load_s``, ``compute_s``, ``write_s``, ``total_s`` (the three together, the figure
the 60 s target is about), ``baselines`` rows written, ``peak_rss_mb``.

Usage: ``ubi bench baselines [--actors N] [--days D] [--seed S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from benchmarks import _harness
from benchmarks.analytics import synthetic_activity


def _rollup_rows(activity: Any, tenant_id: str) -> tuple[list[dict[str, Any]], ...]:
    from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS

    now = datetime.now(UTC)
    s_idx, d_idx = np.nonzero(activity.counters[:, :, 0] > 0)
    rollups = []
    focus: list[dict[str, Any]] = []
    for s, d in zip(s_idx.tolist(), d_idx.tolist(), strict=True):
        row: dict[str, Any] = {
            "tenant_id": tenant_id, "actor_id": activity.subject_ids[s],
            "day": activity.start_day + timedelta(days=d),
            "actor_type": activity.actor_types[s], "team_id": activity.team_ids[s],
            "hours_mask": int(activity.hours_mask[s, d]),
            "first_event_at": now, "last_event_at": now, "updated_at": now}
        row.update(zip(ROLLUP_COUNTER_COLUMNS,
                       (int(v) for v in activity.counters[s, d].tolist()), strict=True))
        rollups.append(row)
        if activity.focus_sessions[s, d] or activity.focus_minutes[s, d]:
            focus.append({"tenant_id": tenant_id, "actor_id": row["actor_id"], "day": row["day"],
                          "focus_minutes": float(activity.focus_minutes[s, d]),
                          "focus_sessions": int(activity.focus_sessions[s, d]),
                          "updated_at": now})
    inter: dict[tuple[str, Any, str], int] = {}
    ia = activity.interactions
    for s, d, c, n in zip(ia.subject.tolist(), ia.day.tolist(), ia.counterpart.tolist(),
                          ia.count.tolist(), strict=True):
        key = (activity.subject_ids[s], activity.start_day + timedelta(days=d),
               activity.subject_ids[c % len(activity.subject_ids)])
        if key[0] != key[2]:
            inter[key] = inter.get(key, 0) + int(n)
    interactions = [{"tenant_id": tenant_id, "actor_id": a, "day": d, "counterpart_id": c,
                     "events": n} for (a, d, c), n in inter.items()]
    wi = activity.work_items
    items: dict[tuple[str, Any, str], int] = {}
    for s, d, i, n in zip(wi.subject.tolist(), wi.day.tolist(), wi.item.tolist(),
                          wi.llm_requests.tolist(), strict=True):
        key = (activity.subject_ids[s], activity.start_day + timedelta(days=d), f"WI-{i}")
        items[key] = items.get(key, 0) + int(n)
    work_items = [{"tenant_id": tenant_id, "actor_id": a, "day": d, "work_item_id": w,
                   "events": 1, "llm_requests": n} for (a, d, w), n in items.items()]
    return rollups, focus, interactions, work_items


def run(actors: int = 10_000, days: int = 90, seed: int = 0) -> dict[str, Any]:
    """Write the synthetic rollups, run the recompute, return the figures."""
    from ubi.models import (
        DailyInteraction,
        DailyWorkItem,
        IngestionState,
        daily_focus,
        daily_rollups,
        table_of,
    )
    from ubi.models.session import reset_engines, session_factory
    from ubi.services import databases, schema
    from ubi.services.baselines import recompute_baselines
    from ubi.settings import load_settings
    from ubi.store import bulk

    lookback = 27  # days before the history that the 28-day windows read
    activity = synthetic_activity(actors, days + lookback, seed)
    end = activity.start_day + timedelta(days=days + lookback - 1)
    admin = os.environ.get("UBI_BENCH_PG_ADMIN_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"ubi_bench_{uuid.uuid4().hex[:10]}"
    databases.create_database(admin, name)
    url = databases.database_url(admin, name)
    settings = load_settings({"DATABASE_URL": url, "CELERY_BROKER_URL": "memory://",
                              "UBI_PSEUDONYM_SECRET": "bench", "UBI_JWT_SECRET": "bench",
                              "UBI_RECEIPT_SIGNING_KEY": _harness.signing_key_pem()})
    try:
        schema.upgrade(settings)
        tenant = "bench"
        rollups, focus, interactions, work_items = _rollup_rows(activity, tenant)
        t = time.perf_counter()
        with session_factory(settings)() as s:
            bulk.copy_rows(s, daily_rollups, rollups)
            bulk.copy_rows(s, daily_focus, focus)
            bulk.copy_rows(s, table_of(DailyInteraction), interactions)
            bulk.copy_rows(s, table_of(DailyWorkItem), work_items)
            s.add(IngestionState(tenant_id=tenant, events_total=0, pending_events=0,
                                 updated_at=datetime.now(UTC)))
            s.commit()
        with session_factory(settings)().connection() as conn:
            conn.exec_driver_sql("COMMIT")
            conn.exec_driver_sql("ANALYZE")  # what autovacuum does after a bulk load
            conn.commit()  # (statistics are transactional: uncommitted, they would be lost)
        setup_s = time.perf_counter() - t
        now = datetime(end.year, end.month, end.day, 3, tzinfo=UTC) + timedelta(days=1)
        t = time.perf_counter()
        with session_factory(settings)() as s:
            outcome = recompute_baselines(s, tenant, now=now)
            s.commit()
        total_s = time.perf_counter() - t
        return {
            "actors": outcome.actors, "days": days, "loaded_days": outcome.days,
            "rollup_rows": len(rollups), "interaction_rows": len(interactions),
            "setup_copy_s": round(setup_s, 3), "load_s": round(outcome.load_s, 3),
            "compute_s": round(outcome.compute_s, 3), "write_s": round(outcome.write_s, 3),
            "total_s": round(total_s, 3), "baselines": outcome.baselines,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        reset_engines()
        databases.drop_database(admin, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = run(args.actors, args.days, args.seed)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"nightly baseline recompute: {figures['actors']} actors x {figures['days']} days "
          f"({figures['rollup_rows']:,} rollup rows, {figures['loaded_days']} days loaded)")
    for key in ("load_s", "compute_s", "write_s"):
        print(f"  {key[:-2]:<8} {figures[key]:8.2f} s")
    print(f"  total    {figures['total_s']:8.2f} s   (target < 60 s)")
    print(f"  baselines written {figures['baselines']:,}; peak RSS {figures['peak_rss_mb']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
