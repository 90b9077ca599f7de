"""A detect worker SIGKILLed in the middle of a run: RabbitMQ redelivers, the retry stores
exactly what one run stores, and no signal version is written twice (issue 5)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.support import features as stored_features
from tests.support.organisation import organisation_events
from tests.support.resources import wait_for_lock_waiter
from tests.support.servers import WorkerProcess
from tests.support.workers import running_worker
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import IngestionState, Signal, SignalVersion, session_factory
from ubi.services import detection, features, ingest


def _snapshot(session):
    signals = sorted(tuple(r) for r in session.execute(sa.select(
        Signal.signal_id, Signal.version, Signal.status, Signal.severity, Signal.score)))
    versions = sorted(tuple(r) for r in session.execute(sa.select(
        SignalVersion.signal_id, SignalVersion.version)))
    feats = stored_features.values(session)
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
