"""The features step's release of the dirty pairs it computed (``features.release_dirty``):
pairs as read go, pairs a batch marked again during the run stay, dirty since the run's read
(not since their first mark), and the release locks in ingestion's key order."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.support.resources import wait_for_lock_waiter
from ubi.models import DirtySubject, session_factory
from ubi.models.base import table_of
from ubi.models.session import create_db_engine
from ubi.services import features
from ubi.settings import Settings
from ubi.store import bulk

DAY = date(2026, 6, 16)
MARKED = datetime(2026, 6, 17, 12, tzinfo=UTC)
READ = MARKED + timedelta(minutes=1)
REMARKED = MARKED + timedelta(minutes=2)


def mark(session: Session, actors: list[str], batch_id: str, now: datetime) -> None:
    """What ingestion does for a batch: upsert its pairs, keeping the oldest ``marked_at``."""
    bulk.upsert_columns(
        session, table_of(DirtySubject),
        {"actor_id": actors, "day": [DAY] * len(actors),
         "focus": np.zeros(len(actors), dtype=np.int16)},
        constants={"tenant_id": "acme", "correlation_id": None, "batch_id": batch_id,
                   "marked_at": now},
        key_columns=("tenant_id", "actor_id", "day"), replace=("correlation_id", "batch_id"),
        bit_or=("focus",))


def dirty(session: Session) -> dict[str, tuple[str | None, datetime]]:
    session.expire_all()
    rows = session.execute(sa.select(DirtySubject.actor_id, DirtySubject.batch_id,
                                     DirtySubject.marked_at)).all()
    session.rollback()
    return {a: (b, m) for a, b, m in rows}


def test_pairs_marked_again_during_a_run_stay_dirty_since_its_read(
        backend_session: Session) -> None:
    s = backend_session
    mark(s, ["amy", "bob", "cat"], "b1", MARKED)
    s.commit()
    taken = features.pending_dirty(s, "acme")
    assert sorted(p.actor_id for p in taken) == ["amy", "bob", "cat"]
    # During the run: a batch marks amy again (ingestion keeps her first marked_at) and dan.
    mark(s, ["amy", "dan"], "b2", REMARKED)
    s.commit()
    assert dirty(s)["amy"] == ("b2", MARKED)

    assert features.release_dirty(s, "acme", taken, read_at=READ) == 2  # bob, cat
    s.commit()
    # amy's change since the read is pending, not the one the run computed; dan was not read.
    assert dirty(s) == {"amy": ("b2", READ), "dan": ("b2", REMARKED)}
    # A later run reads both and releases both.
    taken = features.pending_dirty(s, "acme")
    assert features.release_dirty(s, "acme", taken, read_at=REMARKED) == 2
    s.commit()
    assert dirty(s) == {}


def test_release_waits_in_key_order_for_a_batch_marking_the_same_pairs(
        db_session: Session, settings: Settings) -> None:
    """A batch holds one pair (mid-upsert) when the release starts: the release locks the
    pairs before it and waits there, so the batch can go on to lock the pairs after it (as
    its own key-ordered upsert does) and commit; then the release keeps exactly the pairs the
    batch marked again, dirty since the read."""
    actors = [f"a{i}" for i in range(10)]
    mark(db_session, actors, "b1", MARKED)
    db_session.commit()
    taken = features.pending_dirty(db_session, "acme")
    db_session.rollback()
    engine = create_db_engine(settings.database_url)
    batch = Session(engine)
    released: list[int] = []
    failed: list[BaseException] = []

    def release() -> None:
        try:
            with session_factory()() as run:
                run.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
                released.append(features.release_dirty(run, "acme", taken, read_at=READ))
                run.commit()
        except BaseException as e:  # reported by the test
            failed.append(e)

    try:
        batch.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        mark(batch, ["a3"], "b2", REMARKED)  # not committed: the batch holds a3
        thread = threading.Thread(target=release)
        thread.start()
        assert wait_for_lock_waiter(engine, timeout=30) == 1
        # The rest of the batch's upsert, after a3 in key order: not held by the release.
        mark(batch, ["a7", "zed"], "b2", REMARKED)
        batch.commit()
        thread.join(timeout=30)
    finally:
        batch.close()
        engine.dispose()
    assert not failed, failed
    assert released == [8]
    assert dirty(db_session) == {"a3": ("b2", READ), "a7": ("b2", READ),
                                 "zed": ("b2", REMARKED)}
