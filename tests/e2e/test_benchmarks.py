"""The benchmarks run end to end at toy sizes and print the figures their issues name (their
speed is what they report, never asserted here); what they stored is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench(*args: str, timeout: float = 300) -> dict:  # type: ignore[type-arg]
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
def test_pipeline_benchmark_follows_batches_into_features() -> None:
    f = bench("pipeline", "--duration", "5", "--warmup", "1", "--tenants", "2", "--actors",
              "50")
    for key in ("events_per_s", "p50_accept_to_features_s", "p95_accept_to_features_s",
                "max_backlog"):
        assert key in f, key
    assert f["accepted_events_total"] > 0 and f["lost_events"] == 0
    assert f["failed_batches"] == 0 and f["batches_in_window_not_in_features"] == 0
    assert f["feature_rows"] > 0 and f["tenants_evaluated"] == 2  # yesterday closed
    assert f["settings"]["cpu_reference_ms"]["after"] > 0


@pytest.mark.slow
def test_baselines_benchmark_recomputes_a_small_tenant() -> None:
    f = bench("baselines", "--actors", "60", "--days", "30")
    assert f["actors"] == 60 and f["days"] == 30
    assert f["baselines"] > 0 and f["total_s"] > 0
