"""A pipeline worker SIGKILLed in the middle of a run: RabbitMQ redelivers, the retry stores
exactly what one run stores. Detect: no signal version is written twice (issue 5). Features:
the stored features equal a fault-free run's (issue 23)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.support import features as feature_rows
from tests.support.organisation import organisation_events
from tests.support.resources import wait_for_lock_waiter
from tests.support.servers import WorkerProcess
from tests.support.workers import running_worker
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import DirtySubject, IngestionState, Signal, SignalVersion, session_factory
from ubi.services import detection, feature_check, features, ingest


def _snapshot(session):
    signals = sorted(tuple(r) for r in session.execute(sa.select(
        Signal.signal_id, Signal.version, Signal.status, Signal.severity, Signal.score)))
    versions = sorted(tuple(r) for r in session.execute(sa.select(
        SignalVersion.signal_id, SignalVersion.version)))
    feats = feature_rows.values(session)
    return signals, versions, feats


@pytest.mark.slow
def test_detect_worker_killed_mid_run(settings, db_session, database, broker) -> None:
    # Data ending three days before the suite's "now": the day watermark is then fixed.
    end_day = clock.today() - timedelta(days=3)
    events = organisation_events("acme", end_day=end_day, surge_actor="eng03")
    with session_factory()() as s:
        ingest.store_batch(s, batch_id="b1", tenant_id="acme",
                           events_json="[" + ",".join(json.dumps(e) for e in events) + "]",
                           received_at=clock.utcnow(), correlation_id="b1",
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    with session_factory()() as s:
        features.compute_tenant_features(s, "acme")
        s.commit()
    # What one run stores (computed, read, rolled back).
    with session_factory()() as s:
        reference = detection.detect_tenant(s, "acme")
        expected = _snapshot(s)
        s.rollback()
    assert reference.signal_versions > 0

    engine = session_factory().kw["bind"]
    blocker = engine.connect()
    tx = blocker.begin()
    # The run writes everything, then waits on the tenant's state row... and is killed.
    blocker.execute(sa.text("SELECT 1 FROM ingestion_state WHERE tenant_id = 'acme' FOR UPDATE"))
    from ubi.tasks.detect import detect_tenant

    detect_tenant.apply_async(kwargs={"tenant_id": "acme", "correlation_id": "b1"})
    worker = WorkerProcess("pipeline")
    try:
        assert wait_for_lock_waiter(engine, timeout=90), \
            "the detect run never reached the locked row"
        worker.kill()
    finally:
        tx.rollback()
        blocker.close()
        worker.stop()
    assert db_session.execute(sa.select(sa.func.count()).select_from(Signal)).scalar() == 0
    db_session.rollback()

    with running_worker("features", "detect"):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = db_session.get(IngestionState, "acme")
            if state.last_evaluated_day is not None:
                break
            db_session.rollback()
            time.sleep(0.2)
        time.sleep(0.5)
    db_session.expire_all()
    assert db_session.get(IngestionState, "acme").last_evaluated_day == \
        reference.evaluated_through
    assert _snapshot(db_session) == expected


def _waiting_queries(engine: sa.Engine) -> list[str]:
    """The statements of this database's sessions that wait on a lock."""
    with engine.connect() as probe:
        return list(probe.execute(sa.text(
            "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalars())


@pytest.mark.slow
def test_features_worker_killed_mid_run(settings, db_session, database, broker) -> None:
    end_day = clock.today() - timedelta(days=3)
    events = organisation_events("acme", end_day=end_day, surge_actor="eng03")
    with session_factory()() as s:
        ingest.store_batch(s, batch_id="b1", tenant_id="acme",
                           events_json=json.dumps(events), received_at=clock.utcnow(),
                           correlation_id="b1",
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    # What a fault-free run stores (computed, read, rolled back: the dirty pairs stay).
    with session_factory()() as s:
        assert features.compute_tenant_features(s, "acme").rows > 0
        expected = feature_rows.by_key(s, "acme")
        s.rollback()
    assert expected

    engine = session_factory().kw["bind"]
    blocker = engine.connect()
    tx = blocker.begin()
    # The run upserts every feature row, then releases its dirty pairs: holding them makes it
    # wait there, its rows written and not committed... and it is killed.
    blocker.execute(sa.text("SELECT 1 FROM dirty_subjects WHERE tenant_id = 'acme' FOR UPDATE"))
    from ubi.tasks.features import compute_features

    compute_features.apply_async(kwargs={"tenant_id": "acme", "correlation_id": "b1"})
    worker = WorkerProcess("pipeline")
    try:
        assert wait_for_lock_waiter(engine, timeout=90), \
            f"the features run never reached the locked rows: {worker.log_tail()}"
        waiting = _waiting_queries(engine)
        # (the release locks its pairs in key order before deleting them)
        assert len(waiting) == 1 and waiting[0].lstrip().upper().startswith(
            "SELECT 1 FROM DIRTY_SUBJECTS") and "FOR UPDATE" in waiting[0].upper(), waiting
        worker.kill()
    finally:
        tx.rollback()
        blocker.close()
        worker.stop()
    # Nothing of the killed run is visible; its work is still owed.
    assert feature_rows.by_key(db_session, "acme") == {}
    assert db_session.execute(sa.select(sa.func.count()).select_from(DirtySubject)).scalar()
    db_session.rollback()

    # A new worker takes the redelivered message (only the features queue: detection would
    # add the group scopes' rows a fault-free features run does not write).
    with running_worker("features"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not db_session.execute(sa.select(sa.func.count()).select_from(
                    DirtySubject)).scalar():
                break
            db_session.rollback()
            time.sleep(0.2)
    db_session.expire_all()
    assert feature_rows.by_key(db_session, "acme") == expected
    report = feature_check.check_features(db_session, "acme")
    assert report.consistent and report.compared == len(expected), report.summary()
