"""Prometheus metrics of SPEC §11, gathered across processes (prometheus-client multiprocess).

Each process group (gunicorn's ``web``, each ``ubi worker GROUP``) writes its processes' samples
to its own directory under ``UBI_METRICS_DIR`` (``observability.multiproc``); ``GET
/v1/ubi/metrics`` merges every group directory found there, so the web shows what the workers
on its host recorded. Every family declared here is on the page from process start, with
HELP and TYPE even before it has samples. The backlog gauges (``ubi_queue_size``, the outbox
depths and ages) are read from the store when the page is scraped. Without a group directory
(the embedded demo, ``ubi devserver``) the process's own registry is exposed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from ubi.settings import get_settings

EVENTS_PROCESSED = Counter(
    "ubi_events_processed_total", "Posted items by outcome, each counted once: rejected and "
    "duplicate when the API accepts a batch; stored, duplicate (already stored, or deleted "
    "while in flight), counted (a signal kind that is counted, not stored; event_type is the "
    "kind) and dropped (a type unknown or not enabled for the tenant) by the ingest worker",
    ["tenant_id", "event_type", "status"])
SIGNALS_GENERATED = Counter(
    "ubi_signals_generated_total", "Signals created", ["tenant_id", "dimension", "signal_type"])
ANOMALIES = Counter(
    "ubi_anomalies_total", "Anomalies raised", ["tenant_id", "dimension", "severity"])
RECEIPT_EMISSION = Counter(
    "ubi_receipt_emission_total", "Receipts by delivery outcome", ["tenant_id", "status"])
#: Features are computed vectorised, all of a window at once: per features run, each feature's
#: sample is the time of the statements computing it (over the run's windows) plus a share of
#: the run's common work in proportion to it, so the samples of one run add up to the run.
#: Detection's own feature cubes (part of evaluating days) are not observed.
FEATURE_DURATION = Histogram(
    "ubi_feature_computation_duration_seconds",
    "Time a features run (the features step after ingestion, or the full recompute) spent "
    "on one feature, over all its windows (and scopes, in the full recompute): the vectorised "
    "statements computing that feature (measured), plus the run's common work (loading the "
    "activity, shared inputs, building and writing the rows) apportioned in proportion to the "
    "measured times; one sample per feature and run, the samples of a run add up to its "
    "duration", ["tenant_id", "feature_name"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BASELINE_DURATION = Histogram(
    "ubi_baseline_recompute_duration_seconds",
    "Time spent computing one actor scope's baselines (actor, team, cohort, tenant) over all "
    "windows: in the nightly recompute the scope's cubes and baselines (measured) plus "
    "loading the activity and writing the baselines apportioned in proportion, so a run's "
    "samples add up to it; in detection the scope's baseline recursion alone",
    ["tenant_id", "actor_scope"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
API_DURATION = Histogram(
    "ubi_api_request_duration_seconds", "HTTP request time", ["tenant_id", "endpoint", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RATE_LIMITED = Counter(
    "ubi_rate_limited_total", "Requests refused with 429, by the limit they exceeded "
    "(ingest_tenant, ingest_token, read_tenant, read_token)", ["tenant_id", "limit"])
RATE_LIMIT_FAIL_OPEN = Counter(
    "ubi_rate_limit_fail_open_total", "Requests let through without a rate-limit check because "
    "the limiter's storage (Redis) failed: on this request (error) or a moment before (paused)",
    ["tenant_id", "reason"])
BATCHES_UNQUEUED = Counter(
    "ubi_batches_unqueued_total", "Batches marked failed because they stayed queued past the "
    "bound: never published (the web stopped between commit and publish; no 202 was given)",
    ["tenant_id"])

#: Circuit breakers of outside services: 0 closed, 1 half-open, 2 open. The state itself is
#: shared through Redis (every process sees one breaker); each process sets the gauge when it
#: reads or changes the state, and the page shows the most recent value of all processes.
CIRCUIT_BREAKER_STATE = Gauge(
    "ubi_circuit_breaker_state", "Circuit breaker of an outside service: 0 closed, "
    "1 half-open, 2 open", ["service"], multiprocess_mode="mostrecent")


#: Every family of this module, on the page from process start (``exposition``).
DECLARED: tuple[MetricWrapperBase, ...] = (
    EVENTS_PROCESSED, SIGNALS_GENERATED, ANOMALIES, RECEIPT_EMISSION, FEATURE_DURATION,
    BASELINE_DURATION, API_DURATION, RATE_LIMITED, RATE_LIMIT_FAIL_OPEN, CIRCUIT_BREAKER_STATE)


def apportion(measured: Mapping[str, float], total: float) -> dict[str, float]:
    """Each part's ``measured`` seconds plus its share, in proportion to them, of what
    ``total`` spent beyond their sum (equal shares when nothing was measured): the results
    add up to ``total`` (or to the measured sum, when that is larger)."""
    spent = sum(measured.values())
    rest = max(0.0, total - spent)
    if spent > 0:
        return {k: v + rest * v / spent for k, v in measured.items()}
    return {k: rest / len(measured) for k in measured}


@dataclass(frozen=True)
class Backlog:
    """What the store holds undone when the page is scraped: accepted, unprocessed events
    per tenant (``ubi_queue_size``) and, per outbox, its undelivered rows and the age in
    seconds of the oldest (0 when none)."""

    pending_events: dict[str, int]
    outboxes: dict[str, tuple[int, float]]
    #: Seconds each tenant's ingestion gap (SPEC §9) has been open; 0 when it has none.
    gaps: dict[str, float] = field(default_factory=dict)


class _StoreGauges:
    """The backlog gauges, read from the store at scrape time: the store knows the backlog of
    every process at once, where per-process gauges would each hold the value they last saw
    (and the highest stale one would win). Without a ``Backlog`` (the store could not be
    read) the families are still described, without samples."""

    def __init__(self, backlog: Backlog | None) -> None:
        self.backlog = backlog

    def collect(self) -> list[GaugeMetricFamily]:
        queue = GaugeMetricFamily("ubi_queue_size", "Events accepted and not yet processed",
                                  labels=["tenant_id"])
        depth = GaugeMetricFamily(
            "ubi_outbox_depth", "Outbox rows not delivered yet: task (follow-up tasks not "
            "sent to the broker), signal (signal versions not published on the stream), "
            "receipt (receipts pending delivery to ERIS; dead ones are not counted)",
            labels=["outbox"])
        age = GaugeMetricFamily(
            "ubi_outbox_oldest_age_seconds", "Age of the oldest undelivered row of the outbox "
            "(0 when it is empty)", labels=["outbox"])
        gap = GaugeMetricFamily(
            "ubi_ingestion_gap_seconds", "How long the tenant's ingestion gap (SPEC §9: no "
            "events in hours that usually have them) has been open; 0 when it has none",
            labels=["tenant_id"])
        if self.backlog is not None:
            for tenant_id, events in sorted(self.backlog.pending_events.items()):
                queue.add_metric([tenant_id], float(events))
            for outbox, (rows, oldest) in sorted(self.backlog.outboxes.items()):
                depth.add_metric([outbox], float(rows))
                age.add_metric([outbox], oldest)
            for tenant_id, seconds in sorted(self.backlog.gaps.items()):
                gap.add_metric([tenant_id], seconds)
        return [queue, depth, age, gap]


class _Groups:
    """Every process group's directory under ``root`` merged into one set of families: one
    ``MultiProcessCollector`` per directory would repeat each family once per group."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        for attempt in range(3):
            files = glob.glob(os.path.join(self.root, "*", "*.db"))
            try:
                return _mp.MultiProcessCollector.merge(files, accumulate=True)
            except FileNotFoundError:  # a group restarting emptied its directory meanwhile
                if attempt == 2:
                    raise
        return []


def exposition(backlog: Backlog | None = None) -> tuple[bytes, str]:
    """The metrics page body and its content type; the backlog families have no samples when
    ``backlog`` is None (the store could not be read)."""
    settings = get_settings()
    registry = CollectorRegistry(auto_describe=False)
    if settings.prometheus_multiproc_dir:
        families = list(_Groups(settings.metrics_dir).collect())
        # A labelled metric writes nothing to the files before its first use: the families
        # without samples yet are described (HELP and TYPE), so every one is there from start.
        present = {f.name for f in families}
        families += [f for m in DECLARED for f in m.describe() if f.name not in present]
        registry.register(_Fixed(families))
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)  # declared families are described there already
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_StoreGauges(backlog))
    return body + generate_latest(extra), CONTENT_TYPE_LATEST


class _Fixed:
    """Families collected once (the merge is read once per scrape)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def mark_process_dead(pid: int) -> None:
    """A dead process's live gauges go (gunicorn ``child_exit``, Celery
    ``worker_process_shutdown``); its counters and histograms stay in the totals."""
    path = get_settings().prometheus_multiproc_dir
    if path:
        _mp.mark_process_dead(pid, path)
