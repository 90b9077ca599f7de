"""Metrics across real processes (SPEC §11, issue 23): gunicorn and prefork Celery workers,
each group recording into its own directory under ``UBI_METRICS_DIR``, and the web's page
showing all of them. After a small workload through the API (an ingest worker stores it, a
pipeline worker computes features and evaluates yesterday) the page parses, every SPEC §11
family is there with exactly its labels, ``ubi_events_processed_total`` equals what the
database holds (OB-UBI-01), the outbox gauges are there, and ``promtool check metrics``
passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BROKER_URL, CLOCK_FILE, SUITE_NOW
from tests.support.envelopes import envelope
from tests.support.servers import WorkerProcess, free_port
from tests.support.waiting import wait_until
from ubi import clock
from ubi.analytics.taxonomy import ACTOR_SCOPES, FEATURE_NAMES
from ubi.models import Batch, DirtySubject, Event, IngestionState, session_factory

TENANT = "metered"

#: SPEC §11: family (as the parser names it: counters without ``_total``) -> (type, labels).
SPEC_FAMILIES: dict[str, tuple[str, set[str]]] = {
    "ubi_events_processed": ("counter", {"tenant_id", "event_type", "status"}),
    "ubi_signals_generated": ("counter", {"tenant_id", "dimension", "signal_type"}),
    "ubi_anomalies": ("counter", {"tenant_id", "dimension", "severity"}),
    "ubi_receipt_emission": ("counter", {"tenant_id", "status"}),
    "ubi_feature_computation_duration_seconds": ("histogram", {"tenant_id", "feature_name"}),
    "ubi_baseline_recompute_duration_seconds": ("histogram", {"tenant_id", "actor_scope"}),
    "ubi_api_request_duration_seconds": ("histogram", {"tenant_id", "endpoint", "method"}),
    "ubi_queue_size": ("gauge", {"tenant_id"}),
}
OUTBOX_FAMILIES = ("ubi_outbox_depth", "ubi_outbox_oldest_age_seconds")


def _families(page: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(page)}


def _labels(family: Any) -> set[str]:
    """The label names of a family's samples, a histogram bucket's ``le`` aside."""
    names: set[str] = set()
    for sample in family.samples:
        names |= set(sample.labels) - {"le"}
    return names


@contextmanager
def gunicorn(metrics_dir: Path) -> Iterator[str]:
    """gunicorn with the project's config (two workers) on a free loopback port; yields the
    API base URL."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read when it fails to start
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:ubi.web.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2",
         "ubi.web.wsgi:app"],
        env={**os.environ, "UBI_METRICS_DIR": str(metrics_dir)},
        stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}/v1/ubi"
    try:
        def answers() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=5).ok
            except requests.RequestException:  # not listening yet, or still importing
                return proc.poll() is not None  # it gave up: the assertion below says why
        if not wait_until(answers, timeout=30, interval=0.1) or proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn did not start: {log.read().decode()[-3000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass
class Scraped:
    """The metrics pages of one run of the workload, and what the database says of it."""

    at_start: str
    page: str
    outcomes: Counter[str]
    metrics_dir: Path
    seconds: float


def _db_outcomes(tenant: str) -> Counter[str]:
    """What the database says happened to the tenant's posted events, by the statuses of
    ``ubi_events_processed_total`` (and the total of posted items)."""
    with session_factory()() as s:
        batches = list(s.execute(sa.select(Batch).where(Batch.tenant_id == tenant)).scalars())
        stored = s.execute(sa.select(sa.func.count()).select_from(Event).where(
            Event.tenant_id == tenant)).scalar_one()
    out: Counter[str] = Counter()
    out["stored"] = stored
    out["rejected"] = sum(b.rejected for b in batches)
    out["duplicate"] = sum(b.duplicates + b.stored_duplicates for b in batches)
    out["counted"] = sum(b.counted_only for b in batches)
    out["dropped"] = sum(int(b.dropped.get("disallowed_type", 0)) for b in batches)
    out["total"] = sum(b.total for b in batches)
    return out


@pytest.fixture(scope="module")
def scraped(database: str, broker: str, settings: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """gunicorn and prefork workers (ingest, pipeline) on their own metrics directories;
    a small workload through the API, stored by the ingest worker, then features and the
    evaluation of yesterday on the pipeline worker; the page before and after."""
    from tests.support import resources
    from tests.support.clock import TestClock
    from ubi.tasks.detect import detect_tenant
    from ubi.web.auth import mint_token

    TestClock(CLOCK_FILE).set(SUITE_NOW, ticking=True)  # module-scoped: before the autouse one
    metrics_dir = tmp_path_factory.mktemp("metrics")
    # A stale file of a "previous run" of the ingest group: its start must remove it.
    (metrics_dir / "ingest").mkdir()
    (metrics_dir / "ingest" / "counter_999999.db").write_bytes(b"stale")
    token = mint_token(sub="tester", tenant_id=TENANT, roles=("ubi:write:events",),
                       settings=settings)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    workers = [WorkerProcess(group, pool="prefork", concurrency=2,
                             UBI_METRICS_DIR=str(metrics_dir))
               for group in ("ingest", "pipeline")]
    try:
        with gunicorn(metrics_dir) as base:
            at_start = requests.get(f"{base}/metrics", timeout=10).text

            def post(items: list[dict[str, Any]]) -> None:
                resp = requests.post(f"{base}/events", json={"events": items},
                                     headers=headers, timeout=10)
                assert resp.status_code == 202, resp.text
                batch_id = resp.json()["batch_id"]

                def done() -> bool:
                    status = requests.get(f"{base}/batches/{batch_id}", headers=headers,
                                          timeout=5)
                    return bool(status.ok and status.json()["status"] in ("done", "failed"))
                assert wait_until(done, timeout=30), workers[0].log_tail()

            # Today's and yesterday's events of a few actors in two teams, one item
            # rejected, one repeated within the batch, one metric (counted only); then a
            # second batch repeating one already stored.
            now = clock.utcnow()
            yesterday = now.date() - timedelta(days=1)
            events = [envelope(TENANT, actor=f"dev{a}", signal_type=t,
                               occurred_at=now - timedelta(days=d, hours=h),
                               resource={"repo": "metered/app", "team_id": f"team{a % 2}"})
                      for a in range(6) for d in (0, 1) for h in (1, 2)
                      for t in ("commit_created", "pr_reviewed")]
            post([*events, events[0], envelope(TENANT, schema_version="2.0"),
                  envelope(TENANT, signal_kind="metric", signal_type="cpu_seconds")])
            post([events[1], envelope(TENANT)])

            def features_done() -> bool:
                with session_factory()() as s:
                    return s.execute(sa.select(DirtySubject).limit(1)).first() is None
            assert wait_until(features_done, timeout=30), workers[1].log_tail()
            detect_tenant.apply_async(kwargs={"tenant_id": TENANT,
                                              "through": yesterday.isoformat()})

            def evaluated() -> bool:
                with session_factory()() as s:
                    state = s.get(IngestionState, TENANT)
                    return state is not None and state.last_evaluated_day == yesterday
            assert wait_until(evaluated, timeout=30), workers[1].log_tail()
            page = requests.get(f"{base}/metrics", timeout=10).text
        yield Scraped(at_start, page, _db_outcomes(TENANT), metrics_dir,
                      time.monotonic() - started)
    finally:
        for proc in workers:  # all at once: each may take its time to shut down
            proc.proc.terminate()
        for proc in workers:
            proc.stop()
        resources.truncate_all(database)
        resources.purge_task_queues(BROKER_URL)


@pytest.mark.slow
def test_every_family_is_described_from_process_start(scraped: Scraped) -> None:
    families = _families(scraped.at_start)
    for name, (kind, _) in SPEC_FAMILIES.items():
        assert name in families and families[name].type == kind, name
    for name in OUTBOX_FAMILIES:
        assert {s.labels["outbox"] for s in families[name].samples} == {
            "task", "signal", "receipt"}


@pytest.mark.slow
def test_every_spec_family_has_exactly_its_labels(scraped: Scraped) -> None:
    families = _families(scraped.page)
    for name, (kind, labels) in SPEC_FAMILIES.items():
        assert name in families and families[name].type == kind, name
        if families[name].samples:
            assert _labels(families[name]) == labels, name
    for name in OUTBOX_FAMILIES:
        samples = {s.labels["outbox"]: s.value for s in families[name].samples}
        assert set(samples) == {"task", "signal", "receipt"} and min(samples.values()) >= 0
        assert _labels(families[name]) == {"outbox"}
    assert scraped.seconds < 60


@pytest.mark.slow
def test_events_processed_equals_what_the_database_holds(scraped: Scraped) -> None:
    """OB-UBI-01: every posted item counted once, by the outcome the database records, though
    the web (rejected, duplicates at acceptance) and the ingest worker's children (stored,
    duplicates at storage, counted) counted them in different processes."""
    processed: Counter[str] = Counter()
    for sample in _families(scraped.page)["ubi_events_processed"].samples:
        if sample.name == "ubi_events_processed_total":
            assert sample.labels["tenant_id"] == TENANT, sample
            processed[sample.labels["status"]] += int(sample.value)
    expected = scraped.outcomes
    assert (expected["stored"], expected["rejected"], expected["duplicate"],
            expected["counted"]) == (49, 1, 2, 1)
    assert dict(processed) == {k: expected[k] for k in processed}, (processed, expected)
    assert sum(processed.values()) == expected["total"] == 53


@pytest.mark.slow
def test_workers_record_real_feature_names_and_actor_scopes(scraped: Scraped) -> None:
    families = _families(scraped.page)

    def observed(family: str, label: str) -> set[str]:
        return {s.labels[label] for s in families[family].samples
                if s.name.endswith("_count") and s.value > 0}
    assert observed("ubi_feature_computation_duration_seconds",
                    "feature_name") == set(FEATURE_NAMES)
    assert observed("ubi_baseline_recompute_duration_seconds",
                    "actor_scope") == set(ACTOR_SCOPES)
    assert "/v1/ubi/events" in observed("ubi_api_request_duration_seconds", "endpoint")


@pytest.mark.slow
def test_each_group_has_its_own_directory_emptied_at_its_start(scraped: Scraped) -> None:
    groups = {p.name for p in scraped.metrics_dir.iterdir() if p.is_dir()}
    assert groups == {"web", "ingest", "pipeline"}
    assert not (scraped.metrics_dir / "ingest" / "counter_999999.db").exists()
    for group in groups:
        assert list((scraped.metrics_dir / group).glob("*.db")), group


@pytest.mark.slow
def test_promtool_accepts_the_page(scraped: Scraped) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; ./dev installs "
                    "it): the page is only checked with prometheus_client's parser")
    check = subprocess.run([promtool, "check", "metrics"], input=scraped.page, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
