"""Prometheus metrics of SPEC §11, gathered across processes (prometheus-client multiprocess).

When ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn and Celery workers), each process writes
its samples to files there and ``GET /v1/ubi/metrics`` aggregates them; otherwise the process's
own registry is exposed (the embedded demo).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

from ubi.settings import get_settings

EVENTS_PROCESSED = Counter(
    "ubi_events_processed_total", "Events by outcome (accepted, stored, duplicate, rejected, "
    "dropped_*)", ["tenant_id", "event_type", "status"])
SIGNALS_GENERATED = Counter(
    "ubi_signals_generated_total", "Signals created", ["tenant_id", "dimension", "signal_type"])
ANOMALIES = Counter(
    "ubi_anomalies_total", "Anomalies raised", ["tenant_id", "dimension", "severity"])
RECEIPT_EMISSION = Counter(
    "ubi_receipt_emission_total", "Receipts by delivery outcome", ["tenant_id", "status"])
FEATURE_DURATION = Histogram(
    "ubi_feature_computation_duration_seconds", "Feature computation time",
    ["tenant_id", "feature_name"])
BASELINE_DURATION = Histogram(
    "ubi_baseline_recompute_duration_seconds", "Baseline recompute time",
    ["tenant_id", "actor_scope"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
API_DURATION = Histogram(
    "ubi_api_request_duration_seconds", "HTTP request time", ["tenant_id", "endpoint", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
QUEUE_SIZE = Gauge(
    "ubi_queue_size", "Events accepted and not yet processed", ["tenant_id"],
    multiprocess_mode="livemax")


def exposition() -> tuple[bytes, str]:
    """The metrics page body and its content type."""
    if get_settings().prometheus_multiproc_dir:
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """gunicorn ``child_exit`` hook: drop a dead worker's live gauges."""
    if get_settings().prometheus_multiproc_dir:
        _mp.mark_process_dead(pid)
