"""Follow-ups coalesce in PostgreSQL alone: one pending row per (task, key) from its commit
until its task starts; busy steps' next looks are pending rows with ``not_before``; the drain
sends again a pending row whose message was lost (``services/followups.py``)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.support.resources import ready_messages, wait_for_lock_waiter
from ubi.celery_app import app as celery_app
from ubi.models import TaskOutbox, get_engine, session_factory, utcnow
from ubi.services import followups
from ubi.services.followups import OWED_KEY, Owed, enqueue_followup
from ubi.settings import get_settings
from ubi.tasks.base import dispatch_followups
from ubi.tasks.detect import detect_tenant
from ubi.tasks.features import compute_features

FEATURES = "ubi.tasks.features.compute_features"


def _owe(tenant: str, delay: float | None = None) -> tuple[Session, list[Owed]]:
    """A transaction that owes the tenant's features step (what an ingest batch does)."""
    session = session_factory()()
    enqueue_followup(session, FEATURES, tenant_id=tenant,
                     kwargs={"tenant_id": tenant, "correlation_id": None},
                     dedupe_key=f"features:{tenant}", delay_seconds=delay)
    return session, list(session.info.get(OWED_KEY, []))


def _commit_and_dispatch(session: Session, owed: list[Owed]) -> int:
    session.commit()
    session.close()
    return dispatch_followups(celery_app, owed)


def _rows(tenant: str) -> list[tuple[int, bool, bool]]:
    """(id, sent, started) of the tenant's rows."""
    with session_factory()() as s:
        return [(i, d is not None, st is not None) for i, d, st in s.execute(
            sa.select(TaskOutbox.id, TaskOutbox.dispatched_at, TaskOutbox.started_at).where(
                TaskOutbox.tenant_id == tenant).order_by(TaskOutbox.id))]


def _wait_for(broker: str, queue: str, count: int, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while ready_messages(broker, queue) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return ready_messages(broker, queue)


def test_commits_owing_a_pending_run_add_nothing(settings, broker, clean_db) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)

    # The first commit writes the row and sends its message.
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    assert _wait_for(broker, queue, before + 1) == before + 1
    [(first, sent, started)] = _rows(tenant)
    assert sent and not started

    # While its task has not started: no row, no message, and the drain leaves it too.
    assert _commit_and_dispatch(*_owe(tenant)) == 0
    assert _commit_and_dispatch(*_owe(tenant)) == 0
    assert dispatch_followups(celery_app, older_than_seconds=None) == 0
    assert _rows(tenant) == [(first, True, False)]
    assert _wait_for(broker, queue, before + 1) == before + 1

    # The features task runs (here in this process): it marks the row started before it
    # reads its work, so the next commit owes a run of its own.
    assert compute_features.apply(kwargs={"tenant_id": tenant}).get()["dirty"] == 0
    assert _rows(tenant) == [(first, True, True)]
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    assert _wait_for(broker, queue, before + 2) == before + 2
    assert [r[1:] for r in _rows(tenant)] == [(True, True), (True, False)]


def test_a_task_starts_after_an_absorbed_commit(settings, broker, clean_db) -> None:
    """B's follow-up is absorbed by A's pending row while B's transaction is open. A's task
    starting now must not read before B's work is committed: its start waits for B."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    b_session, b_owed = _owe(tenant)
    assert b_owed == []  # absorbed, and A's row locked until B commits
    started = threading.Event()

    def start() -> None:
        followups.mark_started(FEATURES, f"features:{tenant}")
        started.set()

    thread = threading.Thread(target=start)
    thread.start()
    try:
        assert wait_for_lock_waiter(get_engine(settings), timeout=5) >= 1
        assert not started.is_set()
    finally:
        b_session.commit()
        b_session.close()
        thread.join(timeout=10)
    assert started.is_set()
    assert [r[1:] for r in _rows(tenant)] == [(True, True)]


def test_busy_looks_make_one_delayed_run(settings, broker, clean_db) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    sent = [_commit_and_dispatch(*_owe(tenant, delay=1.0)) for _ in range(3)]
    assert sent == [1, 0, 0]
    [(row_id, _, _)] = _rows(tenant)
    with session_factory()() as s:
        row = s.get(TaskOutbox, row_id)
        assert row is not None and row.not_before is not None
        assert timedelta(0) < row.not_before - row.created_at <= timedelta(seconds=1)
    # The one look reaches the features queue once due (countdowns travel through Celery's
    # delayed-delivery queues first), and only one.
    assert _wait_for(broker, queue, before + 1, timeout=15) == before + 1
    time.sleep(1)
    assert ready_messages(broker, queue) == before + 1


def test_the_drain_resends_a_lost_pending_run(settings, broker, clean_db) -> None:
    """A purged queue: the pending row absorbs every later commit, and the drain sends it
    again once its message has been out for ``RESEND_AFTER`` without its task starting."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    before = _wait_for(broker, queue, ready_messages(broker, queue))
    assert dispatch_followups(celery_app, older_than_seconds=2.0) == 0  # not lost yet
    with session_factory()() as s:
        s.execute(sa.update(TaskOutbox).where(TaskOutbox.tenant_id == tenant).values(
            dispatched_at=utcnow() - followups.RESEND_AFTER - timedelta(seconds=1)))
        s.commit()
    assert dispatch_followups(celery_app, older_than_seconds=2.0) == 1
    assert _wait_for(broker, queue, before + 1) == before + 1
    [(_, sent, started)] = _rows(tenant)
    assert sent and not started


def test_the_detect_task_starts_its_pending_run(settings, broker, clean_db) -> None:
    """The detect follow-up (key ``detect:<tenant>``, as ingestion, the features step and day
    close owe it) coalesces the same way: a run of the real task starts it."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with session_factory()() as s:
        assert enqueue_followup(s, "ubi.tasks.detect.detect_tenant", tenant_id=tenant,
                                kwargs={"tenant_id": tenant}, dedupe_key=f"detect:{tenant}")
        assert not enqueue_followup(s, "ubi.tasks.detect.detect_tenant", tenant_id=tenant,
                                    kwargs={"tenant_id": tenant},
                                    dedupe_key=f"detect:{tenant}")
        s.commit()
    detect_tenant.apply(kwargs={"tenant_id": tenant}).get()
    assert [r[2] for r in _rows(tenant)] == [True]


def test_coalescing_needs_no_redis(settings, broker, clean_db) -> None:
    """Redis unreachable changes nothing on this path: still one message per pending run."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    saved = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    get_settings.cache_clear()
    try:
        assert _commit_and_dispatch(*_owe(tenant)) == 1
        assert _commit_and_dispatch(*_owe(tenant)) == 0
    finally:
        os.environ["REDIS_URL"] = saved
        get_settings.cache_clear()
    assert _wait_for(broker, queue, before + 1) == before + 1


def test_a_pending_run_never_sent_goes_with_the_next_commit(settings, broker, clean_db) -> None:
    """A commit whose send failed (the database or broker went away right after it) leaves a
    pending row never sent; the next commit it absorbs sends it, without waiting for the
    drain (a database cut under load, tests/resilience/test_database_blips.py)."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    session, owed = _owe(tenant)
    assert len(owed) == 1
    session.commit()  # ...and no dispatch
    session.close()
    assert _commit_and_dispatch(*_owe(tenant)) == 1
    assert _wait_for(broker, queue, before + 1) == before + 1
    assert [r[1:] for r in _rows(tenant)] == [(True, False)]
