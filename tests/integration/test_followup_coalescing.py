"""Follow-ups with a dedupe key coalesce: while a task with that key is queued and has not
started, commits owing it send no message of their own (the task reads their work later)."""

from __future__ import annotations

import os
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.support.resources import ready_messages
from ubi.celery_app import app as celery_app
from ubi.models import TaskOutbox, session_factory
from ubi.services.followups import OWED_KEY, Owed, enqueue_followup
from ubi.settings import get_settings
from ubi.tasks.base import dispatch_followups, needs_message, task_started
from ubi.tasks.detect import detect_tenant
from ubi.tasks.features import compute_features

FEATURES = "ubi.tasks.features.compute_features"


def _owe(tenant: str) -> tuple[Session, list[Owed]]:
    """A transaction that owes the tenant's features step (what an ingest batch does)."""
    session = session_factory()()
    enqueue_followup(session, FEATURES, tenant_id=tenant,
                     kwargs={"tenant_id": tenant, "correlation_id": None},
                     dedupe_key=f"features:{tenant}")
    return session, session.info[OWED_KEY]


def _commit_and_dispatch(session: Session, owed: list[Owed]) -> int:
    session.commit()
    session.close()
    return dispatch_followups(celery_app, owed)


def _rows(tenant: str) -> list[tuple[int, bool]]:
    with session_factory()() as s:
        return [(i, d is not None) for i, d in s.execute(
            sa.select(TaskOutbox.id, TaskOutbox.dispatched_at).where(
                TaskOutbox.tenant_id == tenant).order_by(TaskOutbox.id))]


def _wait_for(broker: str, queue: str, count: int) -> int:
    deadline = time.monotonic() + 5
    while ready_messages(broker, queue) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return ready_messages(broker, queue)


def test_commits_owing_a_queued_task_send_nothing_more(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)

    # The first commit sends the message and marks its row.
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    assert _wait_for(broker, queue, before + 1) == before + 1
    [(first, dispatched)] = _rows(tenant)
    assert dispatched

    # While that task is queued: a new row (the first was sent), no message; a third commit
    # is absorbed by that waiting row, still no message.
    assert _commit_and_dispatch(*_owe(tenant)) == 0
    assert _commit_and_dispatch(*_owe(tenant)) == 0
    assert _rows(tenant) == [(first, True), (first + 1, False)]
    # The drain leaves it too: the queued task covers it.
    assert dispatch_followups(celery_app, older_than_seconds=None) == 0
    assert _wait_for(broker, queue, before + 1) == before + 1

    # The features task runs (here in this process: it clears the mark before it reads its
    # work): the next commit sends again, and its message covers the waiting row.
    assert compute_features.apply(kwargs={"tenant_id": tenant}).get()["dirty"] == 0
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    assert _wait_for(broker, queue, before + 2) == before + 2
    assert _rows(tenant) == [(first, True), (first + 1, True)]


def test_a_commit_absorbed_by_a_row_sent_meanwhile_still_sends(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    """B's follow-up was absorbed by A's waiting row; A sends it and that task starts before B
    commits. B's work may be after that task's read, so B sends a message of its own."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    a_session, a_owed = _owe(tenant)
    a_session.commit()  # A's row is visible, not yet sent
    b_session, b_owed = _owe(tenant)
    assert b_owed[0].id == a_owed[0].id  # absorbed
    a_session.close()
    assert dispatch_followups(celery_app, a_owed) == 1
    task_started(f"features:{tenant}")
    assert _commit_and_dispatch(b_session, b_owed) == 1
    assert _wait_for(broker, queue, before + 2) == before + 2
    assert _rows(tenant) == [(a_owed[0].id, True)]


def test_the_detect_task_clears_its_mark_before_it_reads(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    """The detect follow-up (key ``detect:<tenant>``, as ingestion and the features step owe
    it) coalesces the same way: a run of the real task ends the wait."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert needs_message(f"detect:{tenant}")  # a message sent: the key is marked
    assert not needs_message(f"detect:{tenant}")
    detect_tenant.apply(kwargs={"tenant_id": tenant}).get()
    assert needs_message(f"detect:{tenant}")
    task_started(f"detect:{tenant}")


def test_with_redis_down_every_commit_sends(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    """Redis unreachable: nothing to coalesce with, so every commit sends (an extra features
    run is harmless, a missing one is not)."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    saved = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    get_settings.cache_clear()
    try:
        assert _commit_and_dispatch(*_owe(tenant)) == 1
        assert _commit_and_dispatch(*_owe(tenant)) == 1
    finally:
        os.environ["REDIS_URL"] = saved
        get_settings.cache_clear()
    assert _wait_for(broker, queue, before + 2) == before + 2
