"""The features step (SPEC §5.1, ``features`` queue): fresh actor features for dirty days.

After each ingest commit, the (actor, day) pairs that received events are dirty. One run per
tenant at a time (an advisory lock) reads them, computes every feature of the dirty actors for
the windows that contain those days, upserts the rows and releases the pairs it computed, all
in one transaction; pairs a batch marked again meanwhile stay for the next run, so ingestion
never waits for this step. Closed days are then handed to detection. Focus time, which
cannot be added up per batch, is recomputed first for the pairs the run computes and the day
after each (``services/focus_time``), once per run however many batches marked them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.calendar import day_from_number, day_number
from ubi.analytics.features import compute_features
from ubi.analytics.ids import feature_id, feature_ids
from ubi.analytics.presence import first_active_day
from ubi.analytics.taxonomy import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES,
    WINDOWS,
)
from ubi.models import DirtySubject, Feature, table_of
from ubi.observability.metrics import FEATURE_DURATION
from ubi.services import activity_store, bulk, configs, focus_time, freshness
from ubi.services.followups import enqueue_followup
from ubi.services.tenant_locks import tenant_lock

log = logging.getLogger("ubi.features")

DETECT_TASK = "ubi.tasks.detect.detect_tenant"
#: Rows per feature upsert statement.
_FEATURE_COLUMNS = ("feature_id", "tenant_id", "actor_scope", "subject_id", "feature_name",
                    "dimension", "window", "day", "window_start", "window_end", "value",
                    "confidence", "metadata", "correlation_id", "computed_at")


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


def pending_dirty(session: Session, tenant_id: str, limit: int = CLAIM_LIMIT
                  ) -> list[tuple[str, date, str | None, str | None]]:
    """The tenant's dirty (actor, day, correlation id, batch id), oldest pairs first.

    Read without locking: ingestion keeps marking pairs while a run computes (it must never
    wait for the features step), and ``release_dirty`` removes only what this run saw.
    """
    rows = session.execute(
        sa.select(DirtySubject.actor_id, DirtySubject.day, DirtySubject.correlation_id,
                  DirtySubject.batch_id)
        .where(DirtySubject.tenant_id == tenant_id)
        .order_by(DirtySubject.marked_at, DirtySubject.actor_id, DirtySubject.day)
        .limit(limit)).all()
    return [(a, d, c, b) for a, d, c, b in rows]


def release_dirty(session: Session, tenant_id: str,
                  taken: list[tuple[str, date, str | None, str | None]]) -> int:
    """Delete the pairs this run computed, unless a batch marked them again meanwhile (its
    id replaced the one read): those stay dirty for the next run."""
    key = sa.tuple_(DirtySubject.actor_id, DirtySubject.day,
                    sa.func.coalesce(DirtySubject.batch_id, ""))
    done = 0
    for part in bulk.chunks(taken, 2000):
        # a DELETE's result is a CursorResult (Session.execute is typed as returning Result)
        done += cast("sa.CursorResult[Any]", session.execute(
            sa.delete(DirtySubject).where(
                DirtySubject.tenant_id == tenant_id,
                key.in_([(a, d, b or "") for a, d, _, b in part])),
            execution_options={"synchronize_session": False})).rowcount
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
    claimed = pending_dirty(session, tenant_id)
    if not claimed:
        return outcome
    outcome.dirty = len(claimed)
    outcome.correlation_ids = sorted({c for _, _, c, _ in claimed if c})
    correlation_id = outcome.correlation_ids[-1] if outcome.correlation_ids else None
    pairs = {(a, d) for a, d, _, _ in claimed}
    config = configs.load_config(session, tenant_id)
    # Before the activity is read: a dirty day's sequence events may change its focus and the
    # next day's (a session counts on the day it ends). A batch storing sequence events after
    # this read marks its pairs again, so they stay dirty for the next run.
    focus_time.refresh_focus(session, tenant_id, focus_time.affected_days(pairs))

    by_actor: dict[str, date] = defaultdict(lambda: today)
    for a, dirty_day in pairs:
        by_actor[a] = min(by_actor[a], dirty_day)
    first_dirty = min(by_actor.values())
    last_day = max(today, max(d for _, d in pairs))
    start = first_dirty - timedelta(days=max(WINDOWS.values()) - 1)
    activity = activity_store.load_activity(session, tenant_id, start, last_day,
                                            actor_ids=by_actor.keys())
    outcome.actors = activity.n_subjects
    incomplete = activity_store.incomplete_days(session, tenant_id, start, last_day)
    first_active = first_active_day(activity)
    start_n = day_number(start)
    today_n = day_number(today)
    rows: list[dict[str, Any]] = []
    for window in config.windows:
        t0 = time.perf_counter()
        cube = compute_features(activity, window, config, incomplete)
        w = WINDOWS[window]
        feats = [(i, f) for i, f in enumerate(FEATURES) if window in f.windows]
        # The (actor, day) cells to store: from the actor's first dirty (and active) day on.
        cells = [(s, d) for s, actor in enumerate(activity.subject_ids)
                 for d0 in ((by_actor[actor] - start).days,)
                 for d in range(max(d0, int(first_active[s]) if first_active[s] >= 0 else d0),
                                activity.n_days)]
        n_f = len(feats)
        ids = feature_ids(tenant_id, "actor", window, activity.subject_ids, FEATURE_NAMES,
                          np.repeat([s for s, _ in cells], n_f).astype(np.int64),
                          np.tile([i for i, _ in feats], len(cells)).astype(np.int64),
                          np.repeat([start_n + d for _, d in cells], n_f).astype(np.int64)
                          ).astype(str).tolist()
        k = 0
        for s, d in cells:
            actor = activity.subject_ids[s]
            day = start_n + d
            conf = float(cube.confidence[s, d])
            for i, spec in feats:
                v = float(cube.values[s, d, i])
                rows.append(feature_row(
                    tenant_id, "actor", actor, spec.name, spec.dimension, window, w, day,
                    None if np.isnan(v) else v, conf,
                    feature_metadata(spec.name, day >= today_n), correlation_id, now, ids[k]))
                k += 1
        FEATURE_DURATION.labels(tenant_id, f"*:{window}").observe(time.perf_counter() - t0)
    outcome.rows = upsert_features(session, rows)
    outcome.remaining = outcome.dirty - release_dirty(session, tenant_id, claimed)
    if freshness.detection_due(session, tenant_id, now=now):
        enqueue_followup(session, DETECT_TASK, tenant_id=tenant_id,
                         kwargs={"tenant_id": tenant_id, "correlation_id": correlation_id},
                         dedupe_key=f"detect:{tenant_id}", correlation_id=correlation_id)
        outcome.detect_enqueued = True
    return outcome


@lru_cache(maxsize=4096)
def _window_bounds(day: int, w: int) -> tuple[date, datetime, datetime]:
    """(last day, start, end) of the ``w``-day window ending on UTC day number ``day``."""
    end = day_from_number(day)
    start = end - timedelta(days=w - 1)
    return (end, datetime.combine(start, dtime(), tzinfo=UTC),
            datetime.combine(end + timedelta(days=1), dtime(), tzinfo=UTC))


@lru_cache(maxsize=1024)
def feature_metadata(name: str, partial: bool | None = None) -> bulk.JsonText:
    """The stored metadata of a feature, serialised once (rows share it)."""
    spec = FEATURES[FEATURE_INDEX[name]]
    meta: dict[str, Any] = {"volume_only": spec.volume_only, "unit": spec.unit}
    if partial is not None:
        meta["partial"] = partial
    return bulk.JsonText(json.dumps(meta))


def feature_row(tenant_id: str, scope: str, subject: str, name: str, dimension: str,
                window: str, w: int, day: int, value: float | None, confidence: float,
                metadata: dict[str, Any] | bulk.JsonText, correlation_id: str | None,
                now: datetime, fid: str | None = None) -> dict[str, Any]:
    end, window_start, window_end = _window_bounds(day, w)
    return {
        "feature_id": fid or feature_id(tenant_id, scope, subject, name, window, day),
        "tenant_id": tenant_id, "actor_scope": scope, "subject_id": subject,
        "feature_name": name, "dimension": dimension, "window": window, "day": end,
        "window_start": window_start, "window_end": window_end,
        "value": value, "confidence": confidence, "metadata": metadata,
        "correlation_id": correlation_id, "computed_at": now,
    }


def upsert_features(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Insert or refresh feature rows (idempotent: ids are deterministic)."""
    rows = list(rows)
    bulk.upsert_replacing(session, table_of(Feature), rows,
                          key_columns=("feature_id",),
                          replace=("value", "confidence", "metadata", "correlation_id",
                                   "computed_at"),
                          changed=("value", "confidence", "metadata"))
    return len(rows)
