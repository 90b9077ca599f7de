"""The one writer and reader of features (``ubi/store/features.py``): one row per subject-day,
windows merged by the upsert itself, idempotent, on PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.support.resources import wait_for_lock_waiter
from ubi.analytics.calendar import day_number
from ubi.analytics.ids import feature_id
from ubi.analytics.results import FeatureTable
from ubi.analytics.taxonomy import FEATURES
from ubi.models import FeatureDay, session_factory
from ubi.models.session import create_db_engine
from ubi.store import features as feature_store

DAY = date(2026, 6, 16)
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)


def table(window: str, offset: float, *, subject: str = "a1", day: date = DAY,
          confidence: float = 0.75) -> FeatureTable:
    """One subject's values of one day and window: feature i is ``offset + i``, every third
    null."""
    values = np.array([[[np.nan if i % 3 == 2 else offset + i for i in range(len(FEATURES))]]])
    return FeatureTable("acme", "actor", window, [subject], np.array([day_number(day)]),
                        values, np.array([[confidence]]), np.ones((1, 1), dtype=bool))


def values(session: Session, **filters: Any) -> dict[tuple[str, str], float | None]:
    session.expire_all()
    return {(r.window, r.feature_name): r.value
            for r in feature_store.records(session, "acme", **filters)}


def expected(window: str, offset: float) -> dict[tuple[str, str], float | None]:
    return {(window, FEATURES[i].name): None if i % 3 == 2 else offset + i
            for i in feature_store.SLOTS[window]}


def test_records_are_the_written_values_with_derived_ids_and_bounds(backend_session) -> None:
    s = backend_session
    n = feature_store.write(s, [table("24h", 1.0), table("28d", 100.0)], now=NOW,
                            partial_from=day_number(DAY))
    s.commit()
    assert n == len(feature_store.SLOTS["24h"]) + len(feature_store.SLOTS["28d"])
    assert s.execute(sa.select(sa.func.count()).select_from(FeatureDay)).scalar() == 1
    records = list(feature_store.records(s, "acme"))
    assert {(r.window, r.feature_name): r.value for r in records} == {
        **expected("24h", 1.0), **expected("28d", 100.0)}
    r = next(r for r in records if r.window == "28d" and r.feature_name == "commit_count")
    assert r.feature_id == feature_id("acme", "actor", "a1", "commit_count", "28d",
                                      day_number(DAY))
    assert (r.window_start, r.window_end) == (datetime(2026, 5, 20, tzinfo=UTC),
                                              datetime(2026, 6, 17, tzinfo=UTC))
    assert r.metadata == {"volume_only": True, "unit": "commits", "partial": True}
    assert (r.dimension, r.confidence, r.computed_at) == ("activity", 0.75, NOW)
    assert values(s, windows=["7d"]) == {}


def test_one_subjects_window_of_a_day_reads_as_its_records(backend_session) -> None:
    # The profile's shortcut: the same values, ids and confidence as records, in taxonomy
    # order; nothing for a window or a subject not stored.
    s = backend_session
    feature_store.write(s, [table("7d", 10.0, confidence=0.5), table("24h", 1.0, subject="a2")],
                        now=NOW)
    s.commit()
    confidence, got = feature_store.subject_window(s, "acme", "actor", "a1", DAY, "7d")
    records = list(feature_store.records(s, "acme", subject_id="a1", windows=["7d"]))
    assert confidence == 0.5 and len(got) == len(feature_store.SLOTS["7d"])
    assert [(spec.name, fid, value) for spec, fid, value in got] == [
        (r.feature_name, r.feature_id, r.value) for r in records]
    assert any(value is None for _, _, value in got)
    assert feature_store.subject_window(s, "acme", "actor", "a1", DAY, "24h")[1] == []
    assert feature_store.subject_window(s, "acme", "actor", "a3", DAY, "7d")[1] == []


def test_windows_merge_by_mode_and_unchanged_rows_are_not_rewritten(backend_session) -> None:
    s = backend_session
    feature_store.write(s, [table("24h", 1.0), table("7d", 10.0)], now=NOW)
    s.commit()
    later = NOW + timedelta(minutes=5)
    # update: the windows written are replaced, the others kept; the same values write nothing
    feature_store.write(s, [table("7d", 10.0)], now=later)
    s.commit()
    assert {r.computed_at for r in feature_store.records(s, "acme")} == {NOW}
    feature_store.write(s, [table("7d", 20.0), table("28d", 30.0)], now=later)
    s.commit()
    assert values(s) == {**expected("24h", 1.0), **expected("7d", 20.0),
                         **expected("28d", 30.0)}
    assert {r.computed_at for r in feature_store.records(s, "acme")} == {later}
    # fill: only windows the row lacks (none here)
    feature_store.write(s, [table("24h", 5.0)], now=later, mode="fill")
    s.commit()
    assert values(s, windows=["24h"]) == expected("24h", 1.0)
    # replace: the row becomes what is written; a full recompute deletes what it did not write
    feature_store.write(s, [table("28d", 40.0)], now=later, mode="replace")
    feature_store.write(s, [table("28d", 1.0, day=DAY - timedelta(days=1))], now=later)
    deleted = feature_store.delete_missing(s, "acme", DAY - timedelta(days=1), DAY,
                                           [table("28d", 40.0)])
    s.commit()
    assert deleted == 1 and values(s) == expected("28d", 40.0)


def test_concurrent_writers_of_a_new_subject_day_keep_each_others_windows(
        settings, db_session) -> None:
    """The features step (24h) and detection (28d, ``fill`` for actor rows) create the same
    subject-day at once: the second INSERT waits for the first, then merges into its row."""
    first = session_factory()()
    engine = create_db_engine(settings.database_url)
    failed: list[BaseException] = []

    def second() -> None:
        with session_factory()() as s:
            try:
                feature_store.write(s, [table("28d", 100.0)], now=NOW, mode="fill")
                s.commit()
            except BaseException as exc:  # reported by the test thread
                failed.append(exc)

    try:
        feature_store.write(first, [table("24h", 1.0)], now=NOW)  # not committed yet
        thread = threading.Thread(target=second)
        thread.start()
        assert wait_for_lock_waiter(engine, timeout=30) == 1
        first.commit()
        thread.join(timeout=30)
    finally:
        first.close()
        engine.dispose()
    assert not failed, failed
    assert values(db_session) == {**expected("24h", 1.0), **expected("28d", 100.0)}
