"""Privacy deletions (SPEC §6 ``POST /privacy/deletions``, §8; issue 20 PR-UBI-03).

A deletion names a tenant, optionally one actor (by pseudonym) and optionally a range of whole
UTC days. ``request_deletion`` records the job, its audit entry and the task it owes (task
outbox), in the caller's transaction; the API, Data Governance's callback and the retention
job all come through it. ``run_deletion`` executes a job in one transaction, so a worker
that dies half-way leaves nothing half-deleted: the job stays ``running`` and its message,
redelivered, simply runs it again (every statement is idempotent).

What a run does, set-based (no per-row loops):

1. removes the events in scope (whole-tenant deletions truncate the daily ``events``
   partitions that hold no other tenant's rows, on PostgreSQL) and turns their event keys
   into tombstones (``actor_id`` emptied: ids only), so a re-sent copy is a duplicate;
2. removes what was derived from them: rollups, focus, interactions, work items, dirty pairs,
   features, anomalies, scores and signals (with their versions, feedback and anchors) of the
   actor (or every subject, for a whole tenant) from the first deleted day on, as far as a
   window reaches past the last one;
3. streams each removed signal once more as a final version (``status`` resolved, ``reason``
   deleted, no snapshot or evidence) through the signal outbox, whose other rows of those
   signals go, as do their receipts not yet delivered;
4. recomputes what depended on the events with the existing recompute paths: every feature
   of every scope from the first deleted day on (``features.recompute_features``), the
   scores of the evaluated days from then on and the baselines (``detection.restate_days``).

Anomalies and signals of teams, cohorts and the tenant on evaluated days are final (SPEC
§5.3: they were raised on what was known then) and are kept for actor deletions; a
whole-tenant deletion removes them with the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.events import BehaviouralEvent
from ubi.analytics.taxonomy import WINDOWS
from ubi.models import (
    Anomaly,
    BaselineAnchor,
    DailyInteraction,
    DailyWorkItem,
    DeletionJob,
    DirtySubject,
    Event,
    EventKey,
    FeatureDay,
    ReceiptOutbox,
    Score,
    Signal,
    SignalFeedback,
    SignalOutbox,
    SignalVersion,
    daily_focus,
    daily_rollups,
    session_factory,
    table_of,
)
from ubi.models.session import is_postgres
from ubi.observability import tracing
from ubi.services import audit, detection, evidence, feature_refresh, features, focus_time
from ubi.services.followups import enqueue_followup
from ubi.services.tenant_locks import tenant_lock
from ubi.store import bulk, outbox, partitions
from ubi.tasks import names

log = logging.getLogger("ubi.deletions")

#: ``event_keys.actor_id`` of a tombstone: the key of a deleted event, kept so that a re-sent
#: copy is recognised as a duplicate (stored pseudonyms are 64 hex characters, never empty).
TOMBSTONE_ACTOR = ""
#: The ``reason`` of a signal's final version when it is deleted.
DELETED_REASON = "deleted"
STATUSES = ("queued", "running", "done", "failed")
#: How far past the last deleted day a feature window still reads it.
WINDOW_REACH = timedelta(days=max(WINDOWS.values()) - 1)


class DeletionBusy(Exception):
    """Another step holds the tenant (features, detection): run again shortly."""

    def __init__(self, tenant_id: str):
        super().__init__(f"tenant {tenant_id} is busy")
        self.tenant_id = tenant_id


@dataclass(frozen=True)
class Scope:
    """What a job deletes: a tenant, one actor (pseudonym) or all, whole UTC days or all."""

    tenant_id: str
    actor_id: str | None
    first_day: date | None
    last_day: date | None

    @classmethod
    def of(cls, job: DeletionJob) -> Scope:
        return cls(job.tenant_id, job.actor_id, job.time_from.date() if job.time_from else None,
                   (job.time_to - timedelta(days=1)).date() if job.time_to else None)

    def days(self, column: Any) -> sa.ColumnElement[bool]:
        """``column`` (a date) within the deleted days."""
        cond: sa.ColumnElement[bool] = sa.true()
        if self.first_day is not None:
            cond = sa.and_(cond, column >= self.first_day)
        if self.last_day is not None:
            cond = sa.and_(cond, column <= self.last_day)
        return cond

    def reach(self, first: Any, last: Any) -> sa.ColumnElement[bool]:
        """A derived row spanning days ``first``..``last`` overlaps the deleted days or the
        window reach after them (its windows read deleted events)."""
        cond: sa.ColumnElement[bool] = sa.true()
        if self.first_day is not None:
            cond = sa.and_(cond, last >= self.first_day)
        if self.last_day is not None:
            cond = sa.and_(cond, first <= self.last_day + WINDOW_REACH)
        return cond

    def actor(self, column: Any) -> sa.ColumnElement[bool]:
        return column == self.actor_id if self.actor_id is not None else sa.true()

    def covers(self, actor_id: str, day: date) -> bool:
        return ((self.actor_id is None or actor_id == self.actor_id)
                and (self.first_day is None or day >= self.first_day)
                and (self.last_day is None or day <= self.last_day))


def _whole_day(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{name}: must carry a UTC offset")
    value = value.astimezone(UTC)
    if value.timetz().replace(tzinfo=None) != time():
        raise ValueError(f"{name}: must be a UTC midnight (deletions cover whole UTC days)")
    return value


def request_deletion(session: Session, *, tenant_id: str, actor_id: str | None,
                     time_from: datetime | None, time_to: datetime | None,
                     requested_by: str, reason: str) -> str:
    """Record a deletion job (status ``queued``), its audit entry and the task that runs it
    (task outbox), in the caller's transaction; returns the job id.

    ``actor_id`` is the actor's pseudonym (never a raw id), None for every actor of the
    tenant. ``time_from`` (inclusive) and ``time_to`` (exclusive) are UTC midnights, None for
    an open end: deletions cover whole UTC days (a month is ``[1st, 1st of next month)``).
    ``reason`` says why, for the audit log (``privacy_request``, ``retention``, ...).
    Raises ValueError naming the argument when the range is not whole days or is empty.
    """
    time_from = _whole_day("time_from", time_from)
    time_to = _whole_day("time_to", time_to)
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise ValueError("time_to: must be after time_from")
    now = clock.utcnow()
    job_id = str(uuid.uuid4())
    session.add(DeletionJob(job_id=job_id, tenant_id=tenant_id, actor_id=actor_id,
                            time_from=time_from, time_to=time_to, status="queued",
                            requested_by=requested_by[:256], counts={}, created_at=now))
    audit.record(session, tenant_id=tenant_id, action="privacy.deletion_requested",
                 principal=requested_by, now=now, correlation_id=job_id,
                 details={"job_id": job_id, "actor_scoped": actor_id is not None,
                          "time_from": time_from.isoformat() if time_from else None,
                          "time_to": time_to.isoformat() if time_to else None,
                          "reason": reason})
    session.flush()
    enqueue_followup(session, names.RUN_DELETION, tenant_id=tenant_id,
                     kwargs={"job_id": job_id}, dedupe_key=f"deletion:{job_id}",
                     correlation_id=job_id)
    return job_id


def describe(job: DeletionJob) -> dict[str, Any]:
    """A job as the API shows it: never the actor's id or pseudonym."""
    return {
        "job_id": job.job_id, "tenant_id": job.tenant_id, "status": job.status,
        "actor_scoped": job.actor_id is not None,
        "time_from": job.time_from, "time_to": job.time_to,
        "requested_by": job.requested_by, "counts": dict(job.counts or {}),
        "error": job.error, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def run_deletion(job_id: str, *, session: Session | None = None,
                 now: datetime | None = None) -> dict[str, int]:
    """Execute job ``job_id``; returns the rows removed (or changed) per table.

    Without ``session`` it opens and commits its own transactions; with one (a task's), the
    job is marked ``running`` in a commit of its own and the deletion commits with the
    caller. A ``done`` job is not run again (its counts are returned); ``queued``, ``running``
    (a worker died) and ``failed`` ones run. Raises ``DeletionBusy`` when the tenant's
    features or detect step holds it (nothing changed: run again shortly) and LookupError for
    an unknown job.
    """
    if session is None:
        with session_factory()() as own:
            counts = run_deletion(job_id, session=own, now=now)
            own.commit()
            return counts
    now = now or clock.utcnow()
    job = session.get(DeletionJob, job_id)
    if job is None:
        raise LookupError(f"no deletion job {job_id}")
    if job.status == "done":
        return {k: int(v) for k, v in (job.counts or {}).items()}
    if job.status != "running" or job.started_at is None:
        job.status, job.started_at, job.error = "running", now, None
    session.commit()  # visible as running while it works (and after a crash)
    job = session.get(DeletionJob, job_id)
    assert job is not None
    scope = Scope.of(job)
    # Detection and the features step write what this deletes and recomputes: one at a time.
    if not (tenant_lock(session, "features", scope.tenant_id)
            and tenant_lock(session, "detect", scope.tenant_id)):
        session.rollback()
        raise DeletionBusy(scope.tenant_id)
    counts = _delete(session, scope, job_id, now)
    counts.update(_recompute(session, scope, now))
    job.status, job.counts, job.finished_at = "done", counts, now
    audit.record(session, tenant_id=scope.tenant_id, action="privacy.deletion_done",
                 principal="ubi-deletions", now=now, correlation_id=job_id,
                 details={"job_id": job_id, "counts": counts})
    log.info("deletion done", extra={"ubi": {"job_id": job_id, "counts": counts}})
    return counts


def mark_failed(job_id: str, error: str) -> None:
    """Record (in a transaction of its own) that the job's task gave up."""
    with session_factory()() as session:
        session.execute(sa.update(DeletionJob).where(
            DeletionJob.job_id == job_id, DeletionJob.status != "done").values(
            status="failed", error=error[:2000], finished_at=clock.utcnow()))
        session.commit()


def _rowcount(result: Any) -> int:
    return int(cast("sa.CursorResult[Any]", result).rowcount or 0)


def _execute(session: Session, stmt: Any) -> int:
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


def _delete(session: Session, scope: Scope, job_id: str, now: datetime) -> dict[str, int]:
    t = scope.tenant_id
    counts: dict[str, int] = {}
    # The (actor, day) pairs that had events: the day after each may hold a focus session
    # that started on a deleted day.
    r = daily_rollups.c
    touched = cast("set[tuple[str, date]]", {tuple(row) for row in session.execute(
        sa.select(r.actor_id, r.day).where(
            r.tenant_id == t, scope.actor(r.actor_id), scope.days(r.day)))})

    counts["events"] = _delete_events(session, scope)
    k = table_of(EventKey).c
    counts["event_keys_tombstoned"] = _execute(session, sa.update(table_of(EventKey)).where(
        k.tenant_id == t, scope.actor(k.actor_id), k.actor_id != TOMBSTONE_ACTOR,
        scope.days(k.event_date)).values(actor_id=TOMBSTONE_ACTOR))
    for name, table, day in (
            ("daily_rollups", daily_rollups, r.day),
            ("daily_focus", daily_focus, daily_focus.c.day),
            ("daily_interactions", table_of(DailyInteraction), DailyInteraction.day),
            ("daily_work_items", table_of(DailyWorkItem), DailyWorkItem.day),
            ("dirty_subjects", table_of(DirtySubject), DirtySubject.day)):
        counts[name] = _execute(session, sa.delete(table).where(
            table.c.tenant_id == t, scope.actor(table.c.actor_id), scope.days(day)))
    # Focus of the day after the range: recomputed from the events that are left.
    if scope.last_day is not None:
        after = scope.last_day + timedelta(days=1)
        focus_time.refresh_focus(session, t, {(a, after) for a, d in touched
                                              if d == scope.last_day})

    # What was derived: an actor deletion removes the actor's rows; a whole-tenant one every
    # subject's. Features and scores left standing are recomputed afterwards.
    def subject(model: Any) -> sa.ColumnElement[bool]:
        if scope.actor_id is None:
            return sa.true()
        return sa.and_(model.actor_scope == "actor", model.subject_id == scope.actor_id)

    # Feature rows are subject-days (every feature and window of one day).
    counts["feature_days"] = _execute(session, sa.delete(FeatureDay).where(
        FeatureDay.tenant_id == t, subject(FeatureDay),
        scope.reach(FeatureDay.day, FeatureDay.day)))
    counts["scores"] = _execute(session, sa.delete(Score).where(
        Score.tenant_id == t, subject(Score), scope.reach(Score.day, Score.day)))
    counts["anomalies"] = _execute(session, sa.delete(Anomaly).where(
        Anomaly.tenant_id == t, subject(Anomaly),
        scope.reach(sa.func.coalesce(Anomaly.first_day, Anomaly.day), Anomaly.day)))
    signals = list(session.execute(sa.select(Signal).where(
        Signal.tenant_id == t, subject(Signal),
        scope.reach(sa.func.coalesce(Signal.first_day, Signal.day), Signal.day))).scalars())
    counts.update(_delete_signals(session, signals, job_id, now))
    return counts


def _delete_events(session: Session, scope: Scope) -> int:
    """Remove the events in scope: whole daily partitions that hold only this tenant's rows
    are truncated (a whole-tenant deletion, PostgreSQL), the rest is one bulk DELETE.
    Partitions are emptied, not dropped, here; the retention job drops the empty ones of
    expired days (``partitions.drop_empty_partitions``), where a late event for such a day is
    handled by ingestion (it lands in the default partition)."""
    t = scope.tenant_id
    removed = 0
    if scope.actor_id is None and is_postgres(session):
        for day in sorted(partitions.existing_partitions(session)):
            if (scope.first_day is not None and day < scope.first_day) or (
                    scope.last_day is not None and day > scope.last_day):
                continue
            part = f"events_p{day:%Y%m%d}"  # a name read from the catalogue, not input
            row = session.execute(sa.text(
                f"SELECT count(*) FILTER (WHERE tenant_id = :t), "
                f"count(*) FILTER (WHERE tenant_id <> :t) FROM {part}"), {"t": t}).one()
            mine, others = int(row[0]), int(row[1])
            if mine and not others:
                session.execute(sa.text(f"TRUNCATE {part}"))
                removed += mine
    e = table_of(Event).c
    removed += _execute(session, sa.delete(table_of(Event)).where(
        e.tenant_id == t, scope.actor(e.actor_id), scope.days(e.event_date)))
    return removed


def _delete_signals(session: Session, signals: list[Signal], job_id: str,
                    now: datetime) -> dict[str, int]:
    """Remove ``signals`` with everything hanging off them, and outbox each one's final
    version (resolved, reason ``deleted``, no snapshot or evidence) so consumers forget it."""
    ids = [s.signal_id for s in signals]
    counts = {"signals": len(ids), "signal_versions": 0, "signal_outbox": 0,
              "signal_feedback": 0, "baseline_anchors": 0, "receipt_outbox": 0}
    if not ids:
        return counts
    finals = []
    for s in signals:
        payload = {
            "signal_id": s.signal_id, "tenant_id": s.tenant_id, "actor_scope": s.actor_scope,
            "subject_id": s.subject_id, "dimension": s.dimension,
            "signal_class": s.signal_class, "signal_type": s.signal_type,
            "score": round(float(s.score), 3), "severity": s.severity,
            "confidence": round(float(s.confidence), 4), "status": "resolved",
            "reason": DELETED_REASON, "evidence_refs": {}, "features_snapshot": {},
            "intent": None, "expected_outcome": None,
            "created_at": s.created_at.isoformat(), "updated_at": now.isoformat(),
            "resolved_at": now.isoformat(), "version": s.version + 1,
            "correlation_id": job_id,
        }
        finals.append({
            "signal_id": s.signal_id, "version": s.version + 1, "tenant_id": s.tenant_id,
            "routing_key": detection.routing_key(s), "payload": payload,
            "headers": tracing.inject({"tenant_id": s.tenant_id, "correlation_id": job_id,
                                       "schema_version": detection.STREAM_SCHEMA_VERSION}),
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
    t = signals[0].tenant_id  # one job's signals are one tenant's (keys lead with it)
    for part in bulk.chunks(ids, 1000):
        chunk = list(part)
        counts["signal_versions"] += _execute(session, sa.delete(SignalVersion).where(
            SignalVersion.tenant_id == t, SignalVersion.signal_id.in_(chunk)))
        # Earlier versions still pending (and the published ones' copies) go: the final
        # version replaces whatever a consumer has not been sent yet.
        counts["signal_outbox"] += _execute(session, sa.delete(SignalOutbox).where(
            SignalOutbox.tenant_id == t, SignalOutbox.signal_id.in_(chunk)))
        counts["signal_feedback"] += _execute(session, sa.delete(SignalFeedback).where(
            SignalFeedback.tenant_id == t, SignalFeedback.signal_id.in_(chunk)))
        counts["baseline_anchors"] += _execute(session, sa.delete(BaselineAnchor).where(
            BaselineAnchor.tenant_id == t, BaselineAnchor.signal_id.in_(chunk)))
        # Receipts name a signal version as "<signal_id>:<version>"; delivered ones are ERIS's.
        counts["receipt_outbox"] += _execute(session, sa.delete(ReceiptOutbox).where(
            ReceiptOutbox.tenant_id == t, ReceiptOutbox.resource_type == "signal",
            ReceiptOutbox.status != "delivered",
            sa.func.substr(ReceiptOutbox.resource_id, 1, 36).in_(chunk)))
        session.execute(sa.delete(Signal).where(Signal.tenant_id == t,
                                                Signal.signal_id.in_(chunk)),
                        execution_options={"synchronize_session": False})
    # Their evidence not yet at ERIS (1 KB or more, held by handle) is not sent any more.
    blobs = [h["evidence_id"] for s in signals for h in evidence.handles_of(s.evidence_refs or {})]
    for part in bulk.chunks(blobs, 1000):
        counts["receipt_outbox"] += _execute(session, sa.delete(ReceiptOutbox).where(
            ReceiptOutbox.tenant_id == t, ReceiptOutbox.resource_type == evidence.RESOURCE_TYPE,
            ReceiptOutbox.status != "delivered", ReceiptOutbox.receipt_id.in_(list(part))))
    outbox.insert_signal_versions(session, finals)
    enqueue_followup(session, names.DRAIN_SIGNAL_OUTBOX, tenant_id=signals[0].tenant_id,
                     kwargs={}, dedupe_key="publish", correlation_id=job_id)
    return counts


def _recompute(session: Session, scope: Scope, now: datetime) -> dict[str, int]:
    """Recompute, with the pipeline's own paths, what the deleted events fed: features of
    every scope from the first deleted day on, then scores of evaluated days and baselines."""
    first = scope.first_day or date.min
    if scope.first_day is not None:
        feature_refresh.mark(session, scope.tenant_id, feature_refresh.ALL, {first}, now)
    recomputed = features.recompute_features(session, scope.tenant_id, now=now,
                                             everything=scope.first_day is None)
    restated = detection.restate_days(session, scope.tenant_id, first, now=now)
    return {"features_recomputed": recomputed.rows,
            "features_removed_on_recompute": recomputed.deleted,
            "scores_recomputed": restated.scores, "baselines_recomputed": restated.baselines}


def in_flight_filter(session: Session, tenant_id: str, received_at: datetime
                     ) -> Callable[[BehaviouralEvent], bool] | None:
    """For ingestion: whether an event of a batch received at ``received_at`` falls within a
    deletion requested after that (the batch was in flight when it was asked for); None when
    no such deletion exists. Such events are not stored: their keys become tombstones."""
    jobs = session.execute(sa.select(DeletionJob).where(
        DeletionJob.tenant_id == tenant_id, DeletionJob.created_at >= received_at)).scalars()
    scopes = [Scope.of(j) for j in jobs]
    if not scopes:
        return None

    def deleted(event: BehaviouralEvent) -> bool:
        day = event.timestamp_utc.date()
        return any(s.covers(event.actor_id, day) for s in scopes)

    return deleted
