"""Benchmark of the analytics core: baseline recompute and detection at tenant scale.

Synthetic tenant (numpy Generator, fixed seed): ``actors`` actors (humans, agents, services) in
teams of eight, ``days`` days of daily rollups with weekly rhythm, collaboration and work items.
Figures, per the issue (SPEC §15):

- ``features_s``: all features, every window, every day (``compute_features``);
- ``recompute_s``: running + final baselines of every (actor, feature, window) series over all
  days, percentiles included (``compute_baselines``), processed one window at a time;
- ``detect_s``: z-scores and severities of every value against its running baseline
  (``anomalies.detect``);
- ``engine_nightly_s`` (unless ``--no-engine``): the full ``analyse_tenant`` for the last day
  (actor, team, cohort and tenant scope, rules and lifecycle), the nightly path;
- ``peak_rss_mb``: peak resident memory of the process.

Usage: ``python -m benchmarks.analytics [--actors N] [--days D] [--seed S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity, Interactions, WorkItems
from ubi.analytics.anomalies import detect
from ubi.analytics.baselines import BaselineParams, Workspace, compute_baselines
from ubi.analytics.calendar import day_number, workday_mask
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.features import compute_features, prepare_activity
from ubi.analytics.results import PreviousState
from ubi.analytics.taxonomy import FEATURES, ROLLUP_COUNTER_COLUMNS
from ubi.analytics.tenant_config import TenantConfig

START = date(2024, 1, 1)

# Mean daily events per type on a workday for a human; agents do more llm work.
_RATES = {
    "n_file_edited": 12, "n_commit_created": 3, "n_commit_pushed": 2, "n_build_succeeded": 3,
    "n_build_failed": 0.6, "n_test_passed": 5, "n_test_failed": 0.7, "n_pr_created": 0.4,
    "n_pr_merged": 0.4, "n_pr_reviewed": 1.0, "n_pr_commented": 1.5, "n_context_switch": 4,
    "n_llm_request_submitted": 3, "n_llm_request_completed": 2.7, "n_llm_request_failed": 0.3,
    "n_gate_evaluated": 1, "n_policy_violation": 0.05, "n_override_attempted": 0.05,
}


def synthetic_activity(actors: int, days: int, seed: int) -> DailyActivity:
    """A tenant of ``actors`` actors over ``days`` days, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    n_c = len(ROLLUP_COUNTER_COLUMNS)
    kinds = rng.choice(["human", "ai_agent", "service"], size=actors, p=[0.7, 0.25, 0.05])
    teams: list[str | None] = [f"team-{i // 8}" for i in range(actors)]
    workday = workday_mask(day_number(START) + np.arange(days), TenantConfig.default())
    level = rng.gamma(4.0, 0.25, size=actors)  # each actor's own activity level
    presence = np.where(workday[None, :], 0.92, 0.08)
    present = rng.random((actors, days)) < presence
    counters = np.zeros((actors, days, n_c))
    for name, rate in _RATES.items():
        agent_factor = 3.0 if name.startswith("n_llm") else 0.5
        lam = (level[:, None] * rate * present
               * np.where(kinds[:, None] == "ai_agent", agent_factor, 1.0))
        counters[:, :, COUNTER_INDEX[name]] = rng.poisson(lam)
    total = counters[:, :, 3:].sum(axis=2)
    counters[:, :, COUNTER_INDEX["event_count"]] = total
    counters[:, :, COUNTER_INDEX["after_hours"]] = rng.binomial(total.astype(np.int64), 0.12)
    counters[:, :, COUNTER_INDEX["late_night"]] = rng.binomial(total.astype(np.int64), 0.03)
    hours = np.zeros((actors, days), dtype=np.int64)
    for h in range(8, 20):
        hours |= (rng.random((actors, days)) < 0.5 * (total > 0)).astype(np.int64) << h
    focus_n = rng.poisson(2.0 * (total > 0)).astype(float)
    focus_m = focus_n * rng.gamma(6.0, 8.0, size=(actors, days))
    s_idx, d_idx = np.nonzero(total > 0)
    k = s_idx.size
    reps = 3
    inter = Interactions(
        subject=np.repeat(s_idx, reps), day=np.repeat(d_idx, reps),
        counterpart=(np.repeat(s_idx, reps) // 8) * 8 + rng.integers(0, 12, size=k * reps),
        count=rng.integers(1, 4, size=k * reps).astype(float),
        cross_team=rng.random(k * reps) < 0.2)
    items = WorkItems(subject=s_idx, day=d_idx, item=s_idx * 100 + d_idx // 3,
                      llm_requests=counters[s_idx, d_idx,
                                            COUNTER_INDEX["n_llm_request_submitted"]])
    return DailyActivity([f"actor-{i:05d}" for i in range(actors)], kinds.tolist(), teams,
                         START, counters, hours, focus_m, focus_n, inter, items)


def run(actors: int = 10000, days: int = 90, seed: int = 0, engine: bool = True
        ) -> dict[str, Any]:
    """Run the benchmark; returns the figures (seconds, counts, MiB)."""
    config = TenantConfig.default()
    params = BaselineParams.from_config(config)
    t = time.perf_counter()
    activity = synthetic_activity(actors, days, seed)
    build_s = time.perf_counter() - t
    workday = workday_mask(day_number(START) + np.arange(days), config)
    n_f = len(FEATURES)
    warn_crit = np.array([config.thresholds(f.dimension) for f in FEATURES])
    features_s = recompute_s = detect_s = 0.0  # seconds
    n_series = 0
    anomalies = 0
    workspace = Workspace()  # the recompute reuses its buffers window after window
    t = time.perf_counter()
    prepared = prepare_activity(activity)  # sorting shared by every window
    features_s += time.perf_counter() - t
    for window in config.windows:
        t = time.perf_counter()
        cube = compute_features(activity, window, config, prepared=prepared)
        features_s += time.perf_counter() - t

        t = time.perf_counter()
        xs = np.ascontiguousarray(cube.values.transpose(1, 0, 2)).reshape(days, actors * n_f)
        running = compute_baselines(xs, None, workday, params, day_major=True,
                                    workspace=workspace)
        recompute_s += time.perf_counter() - t
        n_series += actors * n_f

        t = time.perf_counter()
        warn = np.tile(warn_crit[:, 0], actors)[:, None]
        crit = np.tile(warn_crit[:, 1], actors)[:, None]
        det = detect(xs.T, running.mean, running.std, running.confidence, warn=warn,
                     critical=crit, min_std=params.min_std)
        detect_s += time.perf_counter() - t
        anomalies += int(np.count_nonzero(det.severity))
        del cube, xs, running, det

    out: dict[str, Any] = {
        "actors": actors, "days": days, "features": n_f, "windows": len(config.windows),
        "series": n_series, "values": n_series * days, "seed": seed,
        "build_input_s": round(build_s, 3), "features_s": round(features_s, 3),
        "recompute_s": round(recompute_s, 3), "detect_s": round(detect_s, 3),
        "anomalous_values": anomalies,
    }
    if engine:
        t = time.perf_counter()
        res = analyse_tenant(activity, config, tenant_id="bench", incomplete_days=None,
                             evaluate_from_day=day_number(START) + days - 1,
                             previous=PreviousState.empty(),
                             now=datetime(2024, 6, 1, tzinfo=UTC))
        out["engine_nightly_s"] = round(time.perf_counter() - t, 3)
        out["engine_signal_changes"] = len(res.signals.changes)
        out["engine_anomalies_created"] = len(res.anomalies.created)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=10000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-engine", action="store_true", help="skip the full engine run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = run(args.actors, args.days, args.seed, engine=not args.no_engine)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"analytics benchmark: {figures['actors']} actors x {figures['features']} features "
          f"x {figures['windows']} windows x {figures['days']} days "
          f"({figures['values']:,} daily values)")
    print(f"  features      {figures['features_s']:8.3f} s")
    print(f"  recompute     {figures['recompute_s']:8.3f} s   (target < 5 s)")
    print(f"  detect        {figures['detect_s']:8.3f} s   (target < 2 s)")
    if "engine_nightly_s" in figures:
        print(f"  engine, 1 day {figures['engine_nightly_s']:8.3f} s   "
              f"({figures['engine_signal_changes']} signal changes)")
    print(f"  peak RSS      {figures['peak_rss_mb']:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
