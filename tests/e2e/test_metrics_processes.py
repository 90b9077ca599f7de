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
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BROKER_URL, CLOCK_FILE, PROJECT_ROOT, QUEUE_PREFIX, SUITE_NOW
from tests.support.envelopes import envelope
from tests.support.servers import WorkerProcess, free_port, stop
from tests.support.waiting import wait_until
from ubi import clock
from ubi.analytics.taxonomy import ACTOR_SCOPES, FEATURE_NAMES
from ubi.models import Batch, DirtySubject, Event, IngestionState, session_factory
from ubi.tasks import names

TENANT = "metered"
OPS_PROMETHEUS = PROJECT_ROOT / "ops" / "prometheus"
#: Jobs of the ops scrape config this test cannot run: celery-exporter is its own image
#: (docker-compose.yml), not a dependency of UBI.
NOT_RUN_HERE = {"celery-exporter"}

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
        stop(proc)
        log.close()


@contextmanager
def flower() -> Iterator[str]:
    """Flower as the Procfile runs it (``celery -A ubi.celery_app flower``), on the test's
    broker and a free loopback port; yields its base URL once its event receiver consumes
    (a probe event, sent under this run's prefix, shows on its metrics page)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read when it fails to start
    # As in compose: Flower is no metrics group (its own registry is its page).
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ubi.celery_app", "flower",
         f"--port={port}", "--address=127.0.0.1"],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    probe = f"{QUEUE_PREFIX}probe@{uuid.uuid4().hex[:8]}"
    try:
        from ubi.celery_app import app

        def consumes() -> bool:
            if proc.poll() is not None:
                return True  # it gave up: the check below says why
            # Flower binds its event queue some time after it answers HTTP: probe until one
            # event arrives, so none of the workload's is missed.
            with app.events.default_dispatcher(hostname=probe) as dispatcher:
                dispatcher.send("worker-online")
            try:
                return probe in requests.get(f"{base}/metrics", timeout=5).text
            except requests.RequestException:  # not listening yet
                return False
        if not wait_until(consumes, timeout=30, interval=0.5) or proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"flower did not start: {log.read().decode()[-3000:]}")
        yield base
    finally:
        stop(proc)
        log.close()


def _scrape_config(targets: dict[str, str], rules_dir: Path) -> dict[str, Any]:
    """The repository's scrape config with each job's compose target replaced by ``targets``
    (job -> host:port) and a short interval; jobs not run here are left out, everything else
    (paths, rule files) kept."""
    config: dict[str, Any] = yaml.safe_load((OPS_PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) - set(targets) == NOT_RUN_HERE, "a job of ops/prometheus is not scraped"
    for name, job in jobs.items():
        if name in targets:
            job["static_configs"] = [{"targets": [targets[name]]}]
    config["scrape_configs"] = [job for name, job in jobs.items() if name in targets]
    # Short, but room for a slow page on a busy machine: a failed scrape marks every series
    # of its target stale, and the queries would find nothing.
    config["global"].update(scrape_interval="2s", scrape_timeout="2s",
                            evaluation_interval="2s")
    # rule files are relative to the config file, which is written elsewhere
    config["rule_files"] = [str(rules_dir / f) for f in config.get("rule_files", [])]
    return config


@contextmanager
def prometheus(targets: dict[str, str], workdir: Path) -> Iterator[str]:
    """Debian's ``prometheus`` on a free loopback port with the repository's scrape config
    (``_scrape_config``) and a storage directory of its own; yields its base URL once every
    target is up."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian's prometheus package; ./dev test "
                    "installs it)")
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(
        _scrape_config({**targets, "prometheus": address}, OPS_PROMETHEUS)))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read when it fails
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://{address}"
    try:
        def all_up() -> bool:
            if proc.poll() is not None:
                return True  # it gave up: the check below says why
            try:
                resp = requests.get(f"{base}/api/v1/targets", timeout=5)
            except requests.RequestException:  # not listening yet
                return False
            active = resp.json()["data"]["activeTargets"] if resp.ok else []
            return len(active) == len(targets) + 1 and all(
                t["health"] == "up" for t in active)
        if not wait_until(all_up, timeout=30, interval=0.5) or proc.poll() is not None:
            log.seek(0)
            targets_now = requests.get(f"{base}/api/v1/targets", timeout=5).text \
                if proc.poll() is None else ""
            raise RuntimeError(f"prometheus: targets not up: {targets_now[-2000:]}\n"
                               f"{log.read().decode()[-3000:]}")
        yield base
    finally:
        stop(proc)
        log.close()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    assert resp.ok and resp.json()["status"] == "success", (promql, resp.text)
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


@dataclass
class Scraped:
    """The metrics pages of one run of the workload, and what the database says of it."""

    at_start: str
    page: str
    outcomes: Counter[str]
    metrics_dir: Path
    seconds: float
    #: The web's API and Flower, both still running while the module's tests run.
    base: str
    flower: str


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
    """gunicorn and prefork workers (ingest, pipeline) on their own metrics directories, and
    Flower; a small workload through the API, stored by the ingest worker, then features and
    the evaluation of yesterday on the pipeline worker; the page before and after. The
    processes keep running until the module's tests are done (Prometheus scrapes them)."""
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
        with flower() as flower_url, gunicorn(metrics_dir) as base:
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
                          time.monotonic() - started, base, flower_url)
            for proc in workers:  # their warm shutdown overlaps Flower's and gunicorn's
                proc.proc.terminate()
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


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_web_and_flower(
        scraped: Scraped, tmp_path: Path) -> None:
    """The repository's scrape config, its targets rewritten to this test's processes: every
    ``ubi_*`` series of the page reaches Prometheus's query API with the workload's values,
    Flower's task events of this run's workers too, and the alert rules load."""
    started = time.monotonic()
    with prometheus({"ubi-web": urlsplit(scraped.base).netloc,
                     "flower": urlsplit(scraped.flower).netloc}, tmp_path) as prom:
        up = {r["metric"]["job"]: r["value"][1] for r in _query(prom, "up")}
        assert up == {"ubi-web": "1", "flower": "1", "prometheus": "1"}

        # Every series name of the web's page is in Prometheus, and nothing else of UBI's.
        page = requests.get(f"{scraped.base}/metrics", timeout=10).text
        on_page = {s.name for f in text_string_to_metric_families(page) for s in f.samples
                   if s.name.startswith("ubi_")}
        stored = {r["metric"]["__name__"] for r in _query(
            prom, 'group by (__name__) ({job="ubi-web", __name__=~"ubi_.+"})')}
        assert stored == on_page
        for name, (kind, labels) in SPEC_FAMILIES.items():
            series = f"{name}_total" if kind == "counter" else (
                f"{name}_count" if kind == "histogram" else name)
            for result in _query(prom, series):
                assert set(result["metric"]) - {"__name__", "job", "instance"} == labels, name

        # OB-UBI-01 through Prometheus: what the database holds, by status.
        processed = {r["metric"]["status"]: int(float(r["value"][1])) for r in _query(
            prom, f'sum by (status) (ubi_events_processed_total{{tenant_id="{TENANT}"}})')}
        assert processed == {k: scraped.outcomes[k] for k in processed}
        assert sum(processed.values()) == scraped.outcomes["total"] == 53
        (queued,) = _query(prom, f'ubi_queue_size{{tenant_id="{TENANT}"}}')
        assert queued["value"][1] == "0"
        features = _query(prom, "count(count by (feature_name) "
                                "(ubi_feature_computation_duration_seconds_count > 0))")
        assert int(features[0]["value"][1]) == len(FEATURE_NAMES)

        # Flower saw this run's workers (their node names carry the queue prefix) finish
        # the two ingest batches and the pipeline's tasks.
        succeeded = {(r["metric"]["worker"].split("@")[0], r["metric"]["task"]):
                     int(float(r["value"][1])) for r in _query(
            prom, f'sum by (worker, task) (flower_events_total{{job="flower", '
                  f'type="task-succeeded", worker=~"{QUEUE_PREFIX}.+"}})')}
        assert succeeded[(f"{QUEUE_PREFIX}ingest", names.INGEST_BATCH)] == 2, succeeded
        assert {w for w, _ in succeeded} == {f"{QUEUE_PREFIX}ingest",
                                             f"{QUEUE_PREFIX}pipeline"}, succeeded

        # The alert rules of ops/prometheus loaded, every one of them.
        rules = requests.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"] for g in rules for r in g["rules"] if r["type"] == "alerting"}
        expected = {r["alert"] for g in yaml.safe_load(
            (OPS_PROMETHEUS / "alerts.yml").read_text())["groups"]
            for r in g["rules"] if "alert" in r}
        assert loaded == expected
    assert time.monotonic() - started < 30
