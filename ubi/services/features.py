"""The features step (SPEC §5.1, ``features`` queue): fresh actor features for dirty days.

After each ingest commit, the (actor, day) pairs that received events are dirty. One run per
tenant at a time (an advisory lock) reads them, computes every feature of the dirty actors for
the windows that contain those days, upserts the rows and releases the pairs it computed, all
in one transaction; pairs a batch marked again meanwhile stay for the next run, dirty since
the run's read (what it computed is no longer pending), so ingestion never waits for this
step's compute and a tenant's oldest pending change moves with every run. Closed days are
then handed to detection. Focus time, which cannot be added up per batch, is recomputed first
for the pairs the run computes that a sequence event marked and the day after each
(``services/focus_time``), once per run however many batches marked them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.calendar import day_number
from ubi.analytics.engine import tenant_features
from ubi.analytics.features import FEATURE_COUNTERS, compute_features, prepare_activity
from ubi.analytics.presence import first_active_day
from ubi.analytics.results import FeatureTable
from ubi.analytics.scopes import stored_cells
from ubi.analytics.taxonomy import WINDOWS
from ubi.models import DirtySubject, IngestionState
from ubi.models.session import is_postgres
from ubi.observability.metrics import FEATURE_DURATION, apportion
from ubi.services import (
    configs,
    feature_refresh,
    focus_time,
    freshness,
)
from ubi.services.followups import enqueue_followup
from ubi.services.tenant_locks import tenant_lock
from ubi.store import bulk
from ubi.store import features as feature_store
from ubi.store.activity import incomplete_days, load_activity
from ubi.tasks import names

log = logging.getLogger("ubi.features")

#: Every scope features are stored for (SPEC §5.1): actors, and their aggregates.
SCOPES = ("actor", "team", "cohort", "tenant")
GROUP_SCOPES = ("team", "cohort", "tenant")


@dataclass
class FeaturesOutcome:
    tenant_id: str
    dirty: int = 0
    actors: int = 0
    rows: int = 0
    detect_enqueued: bool = False
    #: Another run holds the tenant (nothing done).
    busy: bool = False
    #: Pairs marked again by a batch during the run: they stay dirty.
    remaining: int = 0
    correlation_ids: list[str] = field(default_factory=list)


#: Most (actor, day) pairs one run takes.
CLAIM_LIMIT = 50_000


class Claimed(NamedTuple):
    """A claimed dirty pair."""

    actor_id: str
    day: date
    correlation_id: str | None
    batch_id: str | None
    #: Whether a sequence event marked it (only then may its focus have changed).
    focus: bool


def pending_dirty(session: Session, tenant_id: str, limit: int = CLAIM_LIMIT
                  ) -> list[Claimed]:
    """The tenant's dirty (actor, day, correlation id, batch id, focus), oldest pairs first.

    Read without locking: ingestion keeps marking pairs while a run computes (it must never
    wait for the features step), and ``release_dirty`` removes only what this run saw.
    """
    rows = session.execute(
        sa.select(DirtySubject.actor_id, DirtySubject.day, DirtySubject.correlation_id,
                  DirtySubject.batch_id, DirtySubject.focus)
        .where(DirtySubject.tenant_id == tenant_id)
        .order_by(DirtySubject.marked_at, DirtySubject.actor_id, DirtySubject.day)
        .limit(limit)).all()
    return [Claimed(a, d, c, b, bool(f)) for a, d, c, b, f in rows]


#: Lock the claimed rows that still exist in the order ingestion's upsert of
#: ``dirty_subjects`` takes them (``bulk.upsert_columns`` writes rows sorted by Python's
#: (actor_id, day): code point order, which is ``COLLATE "C"`` over UTF-8), so the release and
#: a concurrent batch marking the same pairs never wait for each other in a cycle.
_LOCK_PG = (
    "SELECT 1 FROM dirty_subjects s JOIN unnest(%(a)b::varchar[], %(d)b::date[]) AS u(a, d) "
    "ON s.actor_id = u.a AND s.day = u.d WHERE s.tenant_id = %(t)s "
    'ORDER BY s.actor_id COLLATE "C", s.day FOR UPDATE OF s')
#: Then, with every claimed row locked (one snapshot, two disjoint sets): delete the pairs as
#: read; a pair a batch marked again since (its id replaced) was computed up to the run's
#: read, so its pending change is no older than that: ``marked_at`` moves up to the read time.
_RELEASE_PG = (
    "WITH u AS (SELECT * FROM unnest(%(a)b::varchar[], %(d)b::date[], %(b)b::varchar[]) "
    "AS u(a, d, b)), "
    "released AS (DELETE FROM dirty_subjects s USING u WHERE s.tenant_id = %(t)s "
    "AND s.actor_id = u.a AND s.day = u.d AND COALESCE(s.batch_id, '') = u.b RETURNING 1), "
    "kept AS (UPDATE dirty_subjects s SET marked_at = %(r)s FROM u WHERE s.tenant_id = %(t)s "
    "AND s.actor_id = u.a AND s.day = u.d AND COALESCE(s.batch_id, '') <> u.b "
    "AND s.marked_at < %(r)s RETURNING 1) "
    "SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM kept)")


def release_dirty(session: Session, tenant_id: str, taken: list[Claimed], *,
                  read_at: datetime) -> int:
    """Delete the pairs this run computed, unless a batch marked them again meanwhile (its
    id replaced the one read): those stay dirty for the next run, "dirty since" ``read_at``
    (when the run read the pairs: every change committed before was computed), not since
    their first mark, so a tenant whose batches arrive faster than runs end still sees its
    oldest pending change move. Returns the pairs released."""
    if not taken:
        return 0
    if is_postgres(session):
        # One join against the arrays: a tuple IN list is matched against every dirty row of
        # the tenant (quadratic in the pairs; a third of a run's time at 800 pairs).
        conn = session.connection()
        actors, days = [p.actor_id for p in taken], [p.day for p in taken]
        conn.exec_driver_sql(_LOCK_PG, {"t": tenant_id, "a": actors, "d": days})
        released: int = conn.exec_driver_sql(_RELEASE_PG, {
            "t": tenant_id, "a": actors, "d": days, "b": [p.batch_id or "" for p in taken],
            "r": read_at}).one()[0]
        return released
    # SQLite: one writer at a time, so no lock order to keep.
    key = sa.tuple_(DirtySubject.actor_id, DirtySubject.day,
                    sa.func.coalesce(DirtySubject.batch_id, ""))
    pair = sa.tuple_(DirtySubject.actor_id, DirtySubject.day)
    done = 0
    for part in bulk.chunks(taken, 2000):
        # a DELETE's result is a CursorResult (Session.execute is typed as returning Result)
        done += cast("sa.CursorResult[Any]", session.execute(
            sa.delete(DirtySubject).where(
                DirtySubject.tenant_id == tenant_id,
                key.in_([(p.actor_id, p.day, p.batch_id or "") for p in part])),
            execution_options={"synchronize_session": False})).rowcount
        # What is left of the part was marked again: dirty since the read.
        session.execute(
            sa.update(DirtySubject).where(
                DirtySubject.tenant_id == tenant_id,
                pair.in_([(p.actor_id, p.day) for p in part]),
                DirtySubject.marked_at < read_at).values(marked_at=read_at),
            execution_options={"synchronize_session": False})
    return done


def compute_tenant_features(session: Session, tenant_id: str, *, now: datetime | None = None
                            ) -> FeaturesOutcome:
    """Store the features of the tenant's dirty (actor, day) pairs (one transaction, one run
    per tenant at a time); the pairs are released in the same transaction."""
    now = now or clock.utcnow()
    today = now.date()
    outcome = FeaturesOutcome(tenant_id)
    if not tenant_lock(session, "features", tenant_id):
        outcome.busy = True  # the running one takes what it read; the task looks again
        return outcome
    # Taken before the read: every change committed before the read is computed by this run.
    read_at = clock.utcnow()
    claimed = pending_dirty(session, tenant_id)
    if not claimed:
        return outcome
    outcome.dirty = len(claimed)
    outcome.correlation_ids = sorted({p.correlation_id for p in claimed if p.correlation_id})
    correlation_id = outcome.correlation_ids[-1] if outcome.correlation_ids else None
    pairs = {(p.actor_id, p.day) for p in claimed}
    run_started = time.perf_counter()
    timings: dict[str, float] = {}  # seconds per feature name, over the windows
    config = configs.load_config(session, tenant_id)
    # Before the activity is read: a dirty day's sequence events may change its focus and the
    # next day's (a session counts on the day it ends); only pairs a sequence event marked
    # can have changed. A batch storing sequence events after this read marks its pairs
    # again, so they stay dirty for the next run.
    focus_time.refresh_focus(session, tenant_id, focus_time.affected_days(
        {(p.actor_id, p.day) for p in claimed if p.focus}))

    by_actor: dict[str, date] = defaultdict(lambda: today)
    for a, dirty_day in pairs:
        by_actor[a] = min(by_actor[a], dirty_day)
    first_dirty = min(by_actor.values())
    last_day = max(today, max(d for _, d in pairs))
    start = first_dirty - timedelta(days=max(WINDOWS.values()) - 1)
    activity = load_activity(session, tenant_id, start, last_day, actor_ids=by_actor.keys(),
                             counters=FEATURE_COUNTERS)
    outcome.actors = activity.n_subjects
    incomplete = incomplete_days(session, tenant_id, start, last_day)
    first_active = first_active_day(activity)
    first_dirty_index = np.array([(by_actor[a] - start).days for a in activity.subject_ids],
                                 dtype=np.int64)
    # Values only from the first dirty day on (the days before feed the windows).
    e0 = int(first_dirty_index.min()) if len(first_dirty_index) else 0
    day_index = np.arange(e0, activity.n_days)
    days = day_number(start) + day_index
    today_n = day_number(today)
    prepared = prepare_activity(activity)  # once for every window
    tables = []
    for window in config.windows:
        cube = compute_features(activity, window, config, incomplete, prepared, timings,
                                from_index=e0)
        # The (actor, day) cells to store: from the actor's first dirty day on, those that
        # have rows at all (the rule every writer follows, ``scopes.stored_cells``).
        stored = stored_cells(cube.values, np.ones(cube.confidence.shape, dtype=bool),
                              first_active, day_index)
        stored &= day_index[None, :] >= first_dirty_index[:, None]
        tables.append(FeatureTable(tenant_id, "actor", window, list(activity.subject_ids),
                                   days, cube.values, cube.confidence, stored))
    # Today's values are of a day still going on (``metadata.partial``).
    outcome.rows = feature_store.write(session, tables, now=now, partial_from=today_n)
    # Per feature name: its measured share, plus the run's shared work (loading, rows, the
    # upsert) apportioned by it, so a run's samples add up to the run (the metric's help).
    for name, seconds in apportion(timings, time.perf_counter() - run_started).items():
        FEATURE_DURATION.labels(tenant_id, name).observe(seconds)
    outcome.remaining = outcome.dirty - release_dirty(session, tenant_id, claimed,
                                                          read_at=read_at)
    # Detection may have read a closed day before these events arrived: its team, cohort and
    # tenant features of that day on are owed a recompute (detection's next run).
    through = freshness.closed_through(session, session.get(IngestionState, tenant_id), now)
    if through is not None:
        feature_refresh.mark(session, tenant_id, feature_refresh.GROUPS,
                             {d for _, d in pairs if d <= through}, now)
    if freshness.detection_due(session, tenant_id, now=now):
        enqueue_followup(session, names.DETECT_TENANT, tenant_id=tenant_id,
                         kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id},
                         dedupe_key=f"detect:{tenant_id}", correlation_id=correlation_id)
        outcome.detect_enqueued = True
    return outcome


@dataclass
class RecomputeFeaturesOutcome:
    tenant_id: str
    first_day: date | None = None
    last_day: date | None = None
    rows: int = 0
    deleted: int = 0
    busy: bool = False


def recompute_features(session: Session, tenant_id: str, *, now: datetime | None = None,
                       everything: bool = False, first_day: date | None = None,
                       last_day: date | None = None) -> RecomputeFeaturesOutcome:
    """The full recompute of features (SPEC §3): every feature of every scope, from the first
    day an event arrived for after ``late_event_days`` (``everything``: from the first stored
    or evaluated day; ``first_day``: from that day) to today (or ``last_day``), from the
    stored rollups; rows of the range that must not exist go. Holds the features and detect
    locks of the tenant, so no other writer of features runs meanwhile."""
    now = now or clock.utcnow()
    outcome = RecomputeFeaturesOutcome(tenant_id)
    if not (tenant_lock(session, "features", tenant_id)
            and tenant_lock(session, "detect", tenant_id)):
        outcome.busy = True
        return outcome
    marks = feature_refresh.pending(session, tenant_id, feature_refresh.ALL)
    state = session.get(IngestionState, tenant_id)
    stored_from = feature_store.first_day(session, tenant_id)
    kept_from = min((d for d in (stored_from, state.first_evaluated_day if state else None)
                     if d is not None), default=None)
    if first_day is None and (kept_from is None or (not marks and not everything)):
        feature_refresh.release(session, tenant_id, feature_refresh.ALL, marks)
        return outcome
    if first_day is not None:
        first = first_day
    else:
        assert kept_from is not None
        first = kept_from if everything else max(kept_from, marks[0][0])
    last = last_day if last_day is not None else max(now.date(), first)
    if last < first:
        return outcome
    # Only the marks of the days recomputed are covered.
    marks = [m for m in marks if (first_day is None or m[0] >= first) and m[0] <= last]
    run_started = time.perf_counter()
    timings: dict[str, float] = {}
    config = configs.load_config(session, tenant_id)
    start = first - timedelta(days=max(WINDOWS.values()) - 1)
    focus_time.refresh_pending(session, tenant_id)
    activity = load_activity(session, tenant_id, start, last)
    incomplete = incomplete_days(session, tenant_id, start, last)
    tables = tenant_features(activity, config, tenant_id=tenant_id,
                             incomplete_days=incomplete, from_day=day_number(first),
                             timings=timings)
    outcome.first_day, outcome.last_day = first, last
    outcome.rows = feature_store.write(session, tables, now=now, mode="replace")
    # As in the features step: measured per feature (every scope), common work apportioned.
    for name, seconds in apportion(timings, time.perf_counter() - run_started).items():
        FEATURE_DURATION.labels(tenant_id, name).observe(seconds)
    # Subject-days of the range that must not exist go (with ``replace``, so do windows).
    outcome.deleted = feature_store.delete_missing(session, tenant_id, first, last, tables)
    feature_refresh.release(session, tenant_id, feature_refresh.ALL, marks)
    log.info("features recomputed", extra={"ubi": {
        "from": str(first), "through": str(last), "rows": outcome.rows,
        "deleted": outcome.deleted}})
    return outcome

