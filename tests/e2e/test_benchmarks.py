"""The benchmarks run end to end at toy sizes and print the figures their issues name (their
speed is what they report, never asserted here); what they stored is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench(*args: str, timeout: float = 300) -> dict:
    done = subprocess.run([sys.executable, "-m", "ubi.cli", "bench", *args, "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_ingest_benchmark_reports_its_figures_and_loses_nothing() -> None:
    f = bench("ingest", "--duration", "4", "--warmup", "1", "--tenants", "2", "--actors", "50")
    for key in ("accepted_events_per_s", "stored_events_per_s", "p50_accept_to_stored_s",
                "p95_accept_to_stored_s", "max_backlog", "copy_events_per_s"):
        assert key in f, key
    assert f["accepted_events_total"] > 0 and f["lost_events"] == 0
    assert f["events_rows"] == f["stored_events_total"] == f["accepted_events_total"]
    assert f["copy_rows"] == f["events_rows"] and f["copy_events_per_s"] > 0
    reference = f["settings"]["cpu_reference_ms"]
    assert reference["before"] > 0 and reference["after"] > 0


@pytest.mark.slow
def test_pipeline_sweep_follows_batches_into_features() -> None:
    # One open-loop step (a fresh stack each costs half a minute here): 500 events/s, which
    # toy tenants keep up with, and the sweep's ceiling.
    sweep = bench("pipeline", "--sweep", "--sweep-start", "500", "--sweep-max", "500",
                  "--ingest-max", "20000", "--batch-size", "100", "--duration", "8",
                  "--warmup", "3", "--tenants", "2", "--actors", "50")
    assert [(s["offered_events_per_s"], s["sustained"]) for s in sweep["steps"]] == [
        (500, True)], sweep["steps"]
    assert sweep["max_sustained_events_per_s"] == 500 and sweep["limited_by"] == "--sweep-max 500"
    assert sweep["features_to_ingest_ratio"] == 0.025
    f = sweep["at_max"]
    for key in ("events_per_s", "p50_accept_to_features_s", "p95_accept_to_features_s",
                "max_backlog"):
        assert key in f, key
    # Detection follows: the window's batches (events over 1.5 days: yesterday's owe group
    # features) reach it no sooner than features.
    assert f["p95_accept_to_detected_s"] >= f["p50_accept_to_detected_s"] > 0
    assert f["p50_accept_to_detected_s"] >= f["p50_accept_to_features_s"]
    assert f["accepted_events_total"] > 0 and f["lost_events"] == 0
    assert f["failed_batches"] == 0 and f["batches_in_window_not_in_features"] == 0
    assert f["feature_days"] > 0 and f["tenants_evaluated"] == 2  # yesterday closed
    assert f["settings"]["cpu_reference_ms"]["after"] > 0


@pytest.mark.slow
def test_baselines_benchmark_recomputes_a_small_tenant() -> None:
    f = bench("baselines", "--actors", "60", "--days", "30")
    assert f["actors"] == 60 and f["days"] == 30
    assert f["baselines"] > 0 and f["total_s"] > 0


@pytest.mark.slow
def test_features_step_benchmark_times_runs_and_their_phases() -> None:
    f = bench("features_step", "--actors", "20", "--batches", "6", "--batch-size", "200",
              "--skip", "0")
    assert f["runs"] == 2
    mean = f["mean"]
    assert mean["dirty_pairs"] > 0 and mean["values_written"] > 0
    for key in ("wall_ms", "cpu_ms", "postgres_cpu_ms", "release_dirty_ms", "refresh_focus_ms",
                "load_activity_ms", "compute_features_ms", "write_ms"):
        assert key in mean, key


@pytest.mark.slow
def test_api_benchmark_loads_a_tiny_tenant_and_reports_latency_and_plans() -> None:
    f = bench("api", "--actors", "12", "--teams", "2", "--days", "20", "--events", "6000",
              "--clients", "2", "--duration", "2", "--warmup", "0.5", timeout=120)
    assert f["scale"]["actors"] == 12 and f["load"]["events_stored"] == 6000
    assert f["load"]["rows"]["feature_days"] > 0 and f["load"]["store_events_per_s"] > 0
    for endpoint in ("profile", "team_summary", "signal_query"):
        r = f[endpoint]
        assert r["count"] > 0 and r["errors"] == 0, (endpoint, f["error_samples"])
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        plans = f["plans"][endpoint]
        assert plans[0]["status"] == 200 and len(plans) > 1
        assert plans[0]["in_process_cpu_ms"] > 0
        assert all("Execution Time" in p["plan"] for p in plans[1:])
    # Where the CPU went: the web workers served the requests, the clients sent them.
    assert f["cpu_ms_per_request"]["web"] > 0 and f["cpu_ms_per_request"]["clients"] > 0
    assert f["cpu"]["postgres_cpu_s"] > 0 and f["client_threads_cpu_s"] >= 0
    assert f["slowest_endpoint"] in ("profile", "team_summary", "signal_query")
    assert f["settings"]["rate_limits"] == "off" and not f["kept"]


@pytest.mark.slow
def test_stream_benchmark_drains_everything_and_loses_nothing() -> None:
    f = bench("stream", "--signals", "1500", "--tenants", "3", "--baseline", "100",
              "--overflow", "park", "--bound", "200", timeout=180)
    for key in ("signals_per_s", "one_at_a_time_per_s", "lost", "speedup"):
        assert key in f, key
    assert f["published"] == f["signals"] == f["received_mmm"] == 1500
    assert f["lost"] == 0 and f["duplicates"] == 0
    assert f["bounded_depth"] == 200 and f["parked"] == 1300 and f["held_back"] == 0


def test_storage_benchmark_measures_the_old_table_and_its_conversion(settings, tmp_path
                                                                     ) -> None:
    """``ubi bench storage`` on an embedded database of the old code (``features``): its
    bytes per subject-day, then migration 0015's ``feature_days`` of the same rows."""
    import sqlalchemy as sa

    from tests.support.features import features_table, old_feature_rows
    from ubi.models.session import create_db_engine
    from ubi.services import schema

    path = tmp_path / "old.sqlite3"
    schema.upgrade(settings.replace(database_url=f"sqlite:///{path}"), "0014")
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(features_table()), old_feature_rows())
    finally:
        engine.dispose()
    f = bench("storage", "--sqlite", str(path))
    assert (f["table"], f["subject_days"], f["rows"]) == ("features", 4, len(old_feature_rows()))
    assert (f["converted"]["table"], f["converted"]["rows"]) == ("feature_days", 4)
    assert f["bytes_per_subject_day"] > 0 and f["ratio"] > 1
