"""PostgreSQL unreachable for a while (SPEC §14: a 202 is a promise). The web process and the
workers reach PostgreSQL through a TCP proxy the test cuts and restores; accepted batches are
retried through the cut and stored exactly once, nothing is dead-lettered, and the API takes
batches again as soon as the database is back. A message no retry can fix is dead-lettered
at once, its batch says why, and after the cause is fixed ``ubi dlq retry`` stores it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support.envelopes import envelope, post_events, wait_for_batch
from tests.support.organisation import organisation_events
from tests.support.resources import wait_for_lock_waiter
from tests.support.servers import WorkerProcess, web_process
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import (
    Batch,
    DirtySubject,
    Event,
    IngestionState,
    Signal,
    SignalVersion,
    TenantConfigVersion,
    session_factory,
)
from ubi.services import configs, detection, features, ingest
from ubi.store import features as feature_store

#: The suite's Wednesday noon; the organisations below end with this morning's traffic.
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)


@pytest.fixture
def pg_proxy(settings) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of this run's PostgreSQL, and the database URL that goes through it."""
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
    finally:
        proxy.stop()


@pytest.fixture
def dead_letters(settings, broker):
    from ubi.celery_app import app
    from ubi.integrations.dlq import DeadLetterQueue

    dlq = DeadLetterQueue(settings, known_tasks={n for n in app.tasks if n.startswith("ubi.")})
    dlq.purge()
    yield dlq
    dlq.purge()


def stop_all(*workers: WorkerProcess) -> None:
    for worker in workers:
        worker.proc.terminate()
    for worker in workers:
        worker.stop()


def store(settings, events, tenant: str, batch_id: str) -> None:
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=batch_id, tenant_id=tenant,
                           events_json=json.dumps(events), received_at=NOW,
                           correlation_id=batch_id,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()


def actor_features(settings, tenant: str, actors: list[str]
                   ) -> dict[tuple[str, ...], float | None]:
    """The tenant's actor features keyed by the actor's original id (pseudonyms differ per
    tenant), so two tenants given the same events compare."""
    alias = Pseudonymiser(settings.pseudonym_secret)
    names = {alias.pseudonym(tenant, a): a for a in actors}
    with session_factory()() as s:
        return {(names[r.subject_id], r.feature_name, r.window, str(r.day)): r.value
                for r in feature_store.records(s, tenant, scopes=["actor"])}


def settled(tenant: str) -> bool:
    with session_factory()() as s:
        busy = s.execute(sa.select(sa.func.count()).select_from(Batch).where(
            Batch.tenant_id == tenant, Batch.status != "done")).scalar_one()
        dirty = s.execute(sa.select(sa.func.count()).select_from(DirtySubject).where(
            DirtySubject.tenant_id == tenant)).scalar_one()
    return busy == 0 and dirty == 0


@pytest.mark.slow
@pytest.mark.parametrize("cut_seconds", [5, 30])
def test_a_database_cut_during_sustained_ingestion_loses_nothing(
        cut_seconds, tokens, clean_db, settings, broker, pg_proxy, dead_letters,
        shared_clock) -> None:
    proxy, proxied = pg_proxy
    shared_clock.set(NOW, ticking=True)
    # A week, so that every event arrives within late_event_days (SPEC §9: older arrivals
    # wait for the next full recompute), in batches of 60 as a producer sends them.
    tenant, actors = "blip", [f"eng{i:02d}" for i in range(30)]
    events = organisation_events(tenant, end_day=NOW.date(), until=NOW, days=7, actors=30)
    batches = [events[i:i + 60] for i in range(0, len(events), 60)]
    token = tokens(tenant, "ubi:write:events")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ingest_worker = WorkerProcess("ingest", pool="prefork", concurrency=2,
                                  DATABASE_URL=proxied)
    pipeline_worker = WorkerProcess("pipeline", DATABASE_URL=proxied)
    restored: list[float] = []

    def restore() -> None:
        proxy.start()
        restored.append(time.monotonic())

    try:
        with web_process(DATABASE_URL=proxied) as base:
            accepted: list[str] = []
            refused, back_after = 0, None
            timer = threading.Timer(cut_seconds, restore)
            for i, batch in enumerate(batches):
                if i == len(batches) // 2:
                    # Half the batches were posted as fast as the API takes them: the workers
                    # are storing and computing when every connection is cut.
                    proxy.stop()
                    timer.start()
                while True:
                    resp = requests.post(f"{base}/events", data=json.dumps({"events": batch}),
                                         headers=headers, timeout=60)
                    if resp.status_code == 202:
                        break
                    assert resp.status_code == 503, resp.text
                    assert resp.json()["errors"] == {"dependency": "database"}
                    assert resp.headers["Retry-After"]
                    refused += 1
                    time.sleep(0.1)
                if restored and back_after is None:
                    back_after = time.monotonic() - restored[0]
                summary = resp.json()["summary"]
                assert summary["accepted"] == len(batch), summary  # a 503 stored nothing
                accepted.append(resp.json()["batch_id"])
        timer.join()
        assert refused > 0  # the API did see the cut
        assert back_after is not None and back_after < 10, back_after
        assert wait_until(lambda: settled(tenant), timeout=180), \
            ingest_worker.log_tail() + pipeline_worker.log_tail()
    finally:
        stop_all(ingest_worker, pipeline_worker)

    with session_factory()() as s:
        statuses = dict(s.execute(sa.select(Batch.batch_id, Batch.status).where(
            Batch.batch_id.in_(accepted))).all())
        stored = s.execute(sa.select(Event.event_id).where(Event.tenant_id == tenant)
                           ).scalars().all()
    assert set(statuses.values()) == {"done"} and len(statuses) == len(accepted)
    assert len(stored) == len(set(stored)) == len(events)  # every accepted event, once
    assert dead_letters.depth() == 0
    retried = ingest_worker.log_tail(200_000) + pipeline_worker.log_tail(200_000)
    assert "transient failure, retry 1/" in retried  # the cut did hit running tasks

    # The features equal those of the same events stored without a cut.
    reference = [{**e, "tenant_id": "blip-ref", "signal_id": "ref-" + e["signal_id"]}
                 for e in events]
    store(settings, reference, "blip-ref", "ref-1")
    with session_factory()() as s:
        features.compute_tenant_features(s, "blip-ref")
        s.commit()
    want = actor_features(settings, "blip-ref", actors)
    assert want and actor_features(settings, tenant, actors) == want


def stored_rows(session, tenant: str) -> dict[str, list[tuple[object, ...]]]:
    """What a features or detect run of the tenant wrote, as the session sees it."""
    queries = {
        "signals": sa.select(Signal.signal_id, Signal.version, Signal.status,
                             Signal.severity).where(Signal.tenant_id == tenant),
        "versions": sa.select(SignalVersion.signal_id, SignalVersion.version).where(
            SignalVersion.tenant_id == tenant),
        "dirty": sa.select(DirtySubject.actor_id, DirtySubject.day).where(
            DirtySubject.tenant_id == tenant),
    }
    out = {k: sorted(tuple(r) for r in session.execute(q)) for k, q in queries.items()}
    out["features"] = sorted((r.feature_id, r.value)
                             for r in feature_store.records(session, tenant))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("step", ["features", "detect"])
def test_a_database_cut_in_the_middle_of_a_run_retries_to_the_same_rows(
        step, clean_db, settings, broker, pg_proxy, dead_letters, shared_clock) -> None:
    proxy, proxied = pg_proxy
    shared_clock.set(NOW, ticking=False)
    tenant = "blip"
    events = organisation_events(tenant, end_day=NOW.date(), until=NOW, surge_actor="eng03")
    store(settings, events, tenant, "b1")
    with session_factory()() as s:  # the other step first, so the run is the last one owed
        if step == "detect":
            features.compute_tenant_features(s, tenant)
        else:
            detection.detect_tenant(s, tenant)
        s.commit()
    with session_factory()() as s:  # what one run stores: computed, read, rolled back
        if step == "features":
            features.compute_tenant_features(s, tenant)
        else:
            assert detection.detect_tenant(s, tenant).signal_versions > 0
        s.flush()
        expected = stored_rows(s, tenant)
        s.rollback()

    # The run writes everything, then waits on a row the test holds: the connection is cut
    # while its transaction is open.
    engine = session_factory().kw["bind"]
    blocker = engine.connect()
    tx = blocker.begin()
    if step == "features":
        blocker.execute(sa.text("SELECT 1 FROM dirty_subjects WHERE tenant_id = 'blip' "
                                "LIMIT 1 FOR UPDATE"))
    else:
        blocker.execute(sa.text("SELECT 1 FROM ingestion_state WHERE tenant_id = 'blip' "
                                "FOR UPDATE"))
    worker = WorkerProcess("pipeline", DATABASE_URL=proxied)
    try:
        from ubi.tasks.detect import detect_tenant
        from ubi.tasks.features import compute_features

        task = compute_features if step == "features" else detect_tenant
        task.apply_async(kwargs={"tenant_id": tenant})
        assert wait_for_lock_waiter(engine, timeout=90), worker.log_tail()
        proxy.stop()
        tx.rollback()
        blocker.close()
        time.sleep(8)  # the database stays out of reach for a while
        proxy.start()

        def finished() -> bool:
            with session_factory()() as s:
                if step == "features":
                    return not s.execute(sa.select(DirtySubject).where(
                        DirtySubject.tenant_id == tenant).limit(1)).first()
                return s.get(IngestionState, tenant).last_evaluated_day is not None  # type: ignore[union-attr]
        assert wait_until(finished, timeout=120), worker.log_tail()
    finally:
        if blocker.in_transaction():
            tx.rollback()
        blocker.close()
        stop_all(worker)
    assert "transient failure, retry 1/" in worker.log_tail(200_000)
    with session_factory()() as s:
        assert stored_rows(s, tenant) == expected
    assert dead_letters.depth() == 0


@pytest.mark.slow
def test_a_message_no_retry_can_fix_is_dead_lettered_at_once_and_redriven_after_the_fix(
        client, tokens, clean_db, settings, broker, dead_letters) -> None:
    # A config version written behind the API's back (a faulty migration, say): ingestion of
    # this tenant fails on every attempt until someone stores a valid one.
    with session_factory()() as s:
        s.add(TenantConfigVersion(
            tenant_id="broken", version=1, kind="applied", status="active",
            config={**configs.load_config(s, "broken").raw, "event_type_mapping": 42},
            diff={}, author="faulty-migration", created_at=NOW, snapshot_hash="x"))
        s.commit()
    broken_token = tokens("broken", "ubi:write:events")
    token = tokens("acme", "ubi:write:events")
    broken = post_events(client, broken_token, [envelope("broken", actor="amy")]).json
    flowing = [post_events(client, token, [envelope(actor=f"dev{i}")]).json
               for i in range(3)]
    worker = WorkerProcess("ingest")
    try:
        failed = wait_for_batch(client, broken_token, broken["batch_id"], timeout=60)
        assert failed["status"] == "failed", failed
        assert "TypeError" in failed["error"]
        for b in flowing:  # the queue kept flowing
            assert wait_for_batch(client, token, b["batch_id"])["status"] == "done"
        assert wait_until(lambda: dead_letters.depth() == 1, timeout=30)
        assert [d.task_id for d in dead_letters.list()] == [broken["batch_id"]]

        with session_factory()() as s:  # the fix: a valid config version
            configs.save_config(s, "broken", configs.load_config(s, "acme").raw,
                                author="operator")
            s.commit()
        time.sleep(configs.CACHE_SECONDS)  # the worker re-reads configs after this long
        redrive = subprocess.run(
            [sys.executable, "-m", "ubi.cli", "dlq", "retry", broken["batch_id"]],
            env=dict(os.environ), capture_output=True, text=True, timeout=60)
        assert redrive.returncode == 0 and "re-driven: 1" in redrive.stdout, redrive.stderr
        done = wait_for_batch(client, broken_token, broken["batch_id"], timeout=60)
        assert done["status"] == "done" and done["counts"]["inserted"] == 1, done
        assert done["error"] is None
    finally:
        stop_all(worker)
    assert dead_letters.depth() == 0
    with session_factory()() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Event).where(
            Event.tenant_id == "broken")).scalar_one() == 1
