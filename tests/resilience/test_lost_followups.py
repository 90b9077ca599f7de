"""Follow-ups survive what happens after their commit (issue 19): a process that dies between
its commit and sending the follow-up, and a queue purged by hand. The drain re-sends, a real
worker computes the tenant, and a second run finds nothing to do."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from kombu import Connection

from tests.support import features as stored_features
from tests.support.organisation import organisation_events
from tests.support.resources import ready_messages
from tests.support.workers import running_worker
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.celery_app import app as celery_app
from ubi.models import DirtySubject, TaskOutbox, session_factory
from ubi.services import followups, ingest
from ubi.services.followups import OWED_KEY
from ubi.tasks import names
from ubi.tasks.base import dispatch_followups
from ubi.tasks.features import compute_features


def _store(settings, tenant: str, events: list[dict], batch_id: str) -> int:
    """Store a batch as the ingest task does, commit, send what it owes; the features runs it
    owed (0: a pending run absorbed it)."""
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=batch_id, tenant_id=tenant,
                           events_json=json.dumps(events), received_at=clock.utcnow(),
                           correlation_id=batch_id,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
        owed = list(s.info.pop(OWED_KEY, []))
    dispatch_followups(celery_app, owed)
    return sum(o.task_name == names.COMPUTE_FEATURES for o in owed)


def _dirty(tenant: str) -> int:
    with session_factory()() as s:
        return int(s.execute(sa.select(sa.func.count()).select_from(DirtySubject).where(
            DirtySubject.tenant_id == tenant)).scalar() or 0)


def _features(tenant: str) -> int:
    with session_factory()() as s:
        return stored_features.count(s, tenant)


@pytest.mark.slow
def test_a_purged_queue_needs_no_clean_up(settings, clean_db, broker, shared_clock) -> None:
    tenant = "purged"
    queue = settings.queue_name("features")
    events = organisation_events(tenant, end_day=clock.today() - timedelta(days=2), days=7,
                                 actors=6)
    half = len(events) // 2
    assert _store(settings, tenant, events[:half], "p1") == 1
    assert ready_messages(broker, queue) == 1
    with Connection(broker) as conn:  # an operator purges the queue
        conn.default_channel.queue_purge(queue)
    assert ready_messages(broker, queue) == 0
    # The tenant's run is still pending (its message lost): the next batch adds nothing...
    assert _store(settings, tenant, events[half:], "p2") == 0
    assert dispatch_followups(celery_app, older_than_seconds=2.0) == 0
    # ...until the message has been out for RESEND_AFTER: the periodic drain sends it again.
    shared_clock.advance(followups.RESEND_AFTER + timedelta(seconds=1))
    # (the detect run the first batch owed, unconsumed here, is sent again as well)
    assert dispatch_followups(celery_app, older_than_seconds=2.0) == 2
    assert ready_messages(broker, queue) == 1
    dirty = _dirty(tenant)
    assert dirty > 0
    with running_worker("features"):
        deadline = time.monotonic() + 60
        while _dirty(tenant) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _dirty(tenant) == 0 and _features(tenant) > 0  # both batches' pairs computed
    rows = _features(tenant)
    assert compute_features.apply(kwargs={"tenant_id": tenant}).get()["dirty"] == 0
    assert _features(tenant) == rows


@pytest.mark.slow
def test_dying_after_commit_loses_no_follow_up(settings, clean_db, broker) -> None:
    """The features run commits its rows and the detect run it owes, and its process dies
    before sending it (the task's transaction is run without the dispatch that follows it).
    The drain sends the follow-up; a second features run finds nothing to do."""
    tenant = "crashed"
    events = organisation_events(tenant, end_day=clock.today() - timedelta(days=2), days=7,
                                 actors=6)
    assert _store(settings, tenant, events, "c1") == 1
    detect_queue = settings.queue_name("detect")
    before = ready_messages(broker, detect_queue)
    # The detect run ingestion owed has started (as if a detect worker had taken it): what
    # the features run commits next owes a detect run of its own.
    followups.mark_started(names.DETECT_TENANT, f"detect:{tenant}")
    result, owed = compute_features._run_in_transaction(  # committed, never dispatched
        (), {"tenant_id": tenant, "correlation_id": "c1"})
    assert result["dirty"] > 0 and [o.task_name for o in owed] == [names.DETECT_TENANT]
    with session_factory()() as s:
        [row] = s.execute(sa.select(TaskOutbox).where(
            TaskOutbox.tenant_id == tenant, TaskOutbox.task_name == names.DETECT_TENANT,
            TaskOutbox.started_at.is_(None))).scalars()
        assert row.dispatched_at is None
    time.sleep(2.1)
    assert dispatch_followups(celery_app, older_than_seconds=2.0) >= 1
    deadline = time.monotonic() + 5
    while ready_messages(broker, detect_queue) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready_messages(broker, detect_queue) == before + 1
    assert compute_features.apply(kwargs={"tenant_id": tenant}).get()["dirty"] == 0
