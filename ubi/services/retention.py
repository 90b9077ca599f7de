"""Retention (SPEC §8): which months of a tenant's data to delete, decided by Data Governance.

The daily beat task (``apply_retention``, maintenance queue) asks Data Governance, for every
tenant and every month that still holds its events or rollups, ``{tenant_id, data_category:
"behavioural_events", last_activity_months}``, where ``last_activity_months`` is the number
of whole months from the end of that month (the newest data it can hold) to today: a month is
never described as older than its newest day. Each answer is stored in
``retention_decisions`` (source ``governance``). When Data Governance gives no answer (down,
slow, a 5xx, its breaker open, a 429: the rest of the run does not ask it again before its
``Retry-After``), the last answer it gave for that month applies (the stored row, unchanged);
without one, the tenant's ``retention_days`` (source ``fallback``): only a month wholly older
than ``retention_days`` is deleted, so a guess never deletes younger than policy. Without
``UBI_GOVERNANCE_URL`` every month follows that fallback.

A ``delete`` without legal hold is applied by requesting a deletion job for the whole tenant
and the month's UTC days (``services/deletions.request_deletion``): the job removes the
events and everything derived from them, and audits itself; this module deletes no row. A
month whose retention job is still queued or running gets no second job; ``applied_at``
records when it was requested. Every applied decision is audited (``retention.delete``).

Last, daily ``events`` partitions of the deleted months that no tenant has a row in any more
are dropped (``store.partitions.drop_empty_partitions``): a job requested by this run has not
run yet, so its partitions go on the next day's run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.integrations.breakers import Unavailable
from ubi.integrations.governance import Decision
from ubi.models import DeletionJob, RetentionDecision
from ubi.models.session import dialect_insert, is_postgres
from ubi.services import audit, configs, deletions, freshness
from ubi.services.tenant_locks import tenant_lock
from ubi.store import partitions

log = logging.getLogger("ubi.retention")

#: ``requested_by`` of retention's deletion jobs and the principal of its audit entries.
REQUESTED_BY = "ubi:retention"
GOVERNANCE, FALLBACK = "governance", "fallback"
#: How long the run stops asking after a 429 that names no ``Retry-After``.
DEFAULT_PAUSE_SECONDS = 60.0

_MONTHS_PG = """
WITH RECURSIVE
ev(month) AS (
    SELECT date_trunc('month', min(event_date))::date FROM events WHERE tenant_id = :t
    UNION ALL
    SELECT (SELECT date_trunc('month', min(e.event_date))::date FROM events e
            WHERE e.tenant_id = :t AND e.event_date >= (ev.month + interval '1 month')::date)
    FROM ev WHERE ev.month IS NOT NULL),
ro(month) AS (
    SELECT date_trunc('month', min(day))::date FROM daily_rollups WHERE tenant_id = :t
    UNION ALL
    SELECT (SELECT date_trunc('month', min(r.day))::date FROM daily_rollups r
            WHERE r.tenant_id = :t AND r.day >= (ro.month + interval '1 month')::date)
    FROM ro WHERE ro.month IS NOT NULL)
SELECT month FROM ev WHERE month IS NOT NULL
UNION SELECT month FROM ro WHERE month IS NOT NULL
ORDER BY 1
"""


class Evaluate(Protocol):
    """Data Governance's evaluate call (``GovernanceClient.evaluate``): a decision, or
    :class:`Unavailable`."""

    def __call__(self, tenant_id: str, last_activity_months: int) -> Decision: ...


class RequestDeletion(Protocol):
    """``services.deletions.request_deletion`` (the default): records a deletion job in the
    caller's transaction (with its audit entry and the task it owes) and returns its id."""

    def __call__(self, session: Session, *, tenant_id: str, actor_id: str | None,
                 time_from: datetime | None, time_to: datetime | None, requested_by: str,
                 reason: str) -> str: ...


@dataclass
class MonthDecision:
    """The decision that applies to one month of a tenant's data in a run."""

    tenant_id: str
    month: date
    last_activity_months: int
    decision: Decision
    source: str  # governance | fallback
    #: True when Data Governance answered in this run (else a stored answer or the fallback).
    answered: bool
    decided_at: datetime
    applied_at: datetime | None = None
    job_id: str | None = None


@dataclass
class RetentionReport:
    skipped: bool = False  # another run holds the lock
    tenants: int = 0
    decisions: list[MonthDecision] = field(default_factory=list)
    #: Why Data Governance gave no answer, the first time it did not.
    unavailable: str | None = None
    partitions_dropped: list[date] = field(default_factory=list)

    @property
    def requested(self) -> list[MonthDecision]:
        return [d for d in self.decisions if d.job_id is not None]

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for d in self.decisions:
            key = "answered" if d.answered else ("stored" if d.source == GOVERNANCE
                                                 else FALLBACK)
            by_source[key] = by_source.get(key, 0) + 1
        return {"skipped": self.skipped, "tenants": self.tenants,
                "months": len(self.decisions), "by_source": by_source,
                "deletions_requested": len(self.requested), "unavailable": self.unavailable,
                "partitions_dropped": len(self.partitions_dropped)}


# --- months ---

def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def last_activity_months(month: date, today: date) -> int:
    """Whole months from the end of ``month`` (its newest possible data) to ``today``; 0 for
    this month and the last one."""
    end = next_month(month)  # always a 1st, so whole months are counted by calendar month
    return max((today.year - end.year) * 12 + today.month - end.month, 0)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's UTC days as ``[time_from, time_to)``."""
    return (datetime.combine(month, time.min, UTC),
            datetime.combine(next_month(month), time.min, UTC))


def fallback_decision(month: date, today: date, retention_days: int) -> Decision:
    """``retention_days`` alone: delete only a month whose every day is that old."""
    wholly_older = next_month(month) <= today - timedelta(days=retention_days)
    return Decision("delete" if wholly_older else "retain",
                    policy_id=f"retention_days:{retention_days}")


def stored_months(session: Session, tenant_id: str) -> list[date]:
    """First days of the months that hold the tenant's events or rollups, oldest first."""
    if is_postgres(session):
        # A skip scan: one index probe per month, not a read of every row.
        return list(session.execute(sa.text(_MONTHS_PG), {"t": tenant_id}).scalars())
    days: sa.ScalarResult[Any] = session.execute(sa.text(
        "SELECT event_date FROM events WHERE tenant_id = :t "
        "UNION SELECT day FROM daily_rollups WHERE tenant_id = :t"), {"t": tenant_id}).scalars()
    return sorted({(d if isinstance(d, date) else date.fromisoformat(str(d))).replace(day=1)
                   for d in days})


# --- the run ---

def run_retention(session: Session, evaluate: Evaluate | None, *,
                  now: datetime | None = None,
                  request_deletion: RequestDeletion | None = None) -> RetentionReport:
    """One retention run over every tenant, in the caller's transaction (the caller commits;
    the partition drops at the end hold ``events`` exclusively until then). ``evaluate``
    None: no Data Governance configured (every month follows the fallback)."""
    report = RetentionReport()
    if not tenant_lock(session, "retention", "*"):
        report.skipped = True
        return report
    now = now or clock.utcnow()
    today = now.date()
    paused_until: datetime | None = None

    pending = {(t, f) for t, f in session.execute(
        sa.select(DeletionJob.tenant_id, DeletionJob.time_from).where(
            DeletionJob.requested_by == REQUESTED_BY, DeletionJob.actor_id.is_(None),
            DeletionJob.status.in_(("queued", "running"))))}

    for tenant_id in freshness.tenants(session):
        months = stored_months(session, tenant_id)
        if not months:
            continue
        report.tenants += 1
        retention_days = configs.load_config(session, tenant_id, cached=False).retention_days
        stored = {r.month: r for r in session.execute(
            sa.select(RetentionDecision).where(RetentionDecision.tenant_id == tenant_id,
                                               RetentionDecision.month.in_(months))).scalars()}
        for month in months:
            age = last_activity_months(month, today)
            answer: Decision | None = None
            if evaluate is not None and (paused_until is None or clock.utcnow() >= paused_until):
                try:
                    answer = evaluate(tenant_id, age)
                except Unavailable as exc:
                    failure = exc.failure
                    report.unavailable = report.unavailable or failure.reason
                    if failure.status_code == 429:  # honour it: no more calls until then
                        paused_until = clock.utcnow() + timedelta(
                            seconds=failure.retry_after or DEFAULT_PAUSE_SECONDS)
            row = stored.get(month)
            if answer is not None:
                chosen = MonthDecision(tenant_id, month, age, answer, GOVERNANCE, True, now)
            elif row is not None and row.source == GOVERNANCE:  # its last known answer
                chosen = MonthDecision(
                    tenant_id, month, age,
                    Decision(cast(Any, row.action), row.policy_id, bool(row.legal_hold)),
                    GOVERNANCE, False, row.decided_at)
            else:
                chosen = MonthDecision(tenant_id, month, age,
                                       fallback_decision(month, today, retention_days),
                                       FALLBACK, False, now)
            if chosen.decision.deletes:
                if (tenant_id, month_bounds(month)[0]) in pending:  # requested before, not done yet
                    chosen.applied_at = (row.applied_at if row is not None else None) or now
                else:
                    _apply(session, chosen, request_deletion or deletions.request_deletion, now)
            report.decisions.append(chosen)

    _store(session, report.decisions)
    if report.unavailable:
        log.warning("data governance gave no answer (%s): stored answers and retention_days "
                    "applied", report.unavailable, extra={"ubi": report.summary()})
    report.partitions_dropped = _drop_partitions(session, now)
    log.info("retention run", extra={"ubi": report.summary()})
    return report


def _apply(session: Session, chosen: MonthDecision, request_deletion: RequestDeletion,
           now: datetime) -> None:
    time_from, time_to = month_bounds(chosen.month)
    policy = chosen.decision.policy_id or "no policy id"
    how = "Data Governance" if chosen.answered else (
        "Data Governance's last answer" if chosen.source == GOVERNANCE else "retention_days")
    chosen.job_id = request_deletion(
        session, tenant_id=chosen.tenant_id, actor_id=None, time_from=time_from,
        time_to=time_to, requested_by=REQUESTED_BY,
        reason=f"retention: {chosen.month:%Y-%m} deleted by {how} ({policy})")
    chosen.applied_at = now
    audit.record(session, tenant_id=chosen.tenant_id, action="retention.delete",
                 principal=REQUESTED_BY, now=now, correlation_id=chosen.job_id,
                 details={"month": f"{chosen.month:%Y-%m}", "source": chosen.source,
                          "answered": chosen.answered, "policy_id": chosen.decision.policy_id,
                          "last_activity_months": chosen.last_activity_months,
                          "job_id": chosen.job_id})


def _store(session: Session, decisions: list[MonthDecision]) -> None:
    """Upsert every month's decision in one statement (a stored answer used again keeps its
    own ``decided_at``; only its ``applied_at`` moves)."""
    if not decisions:
        return
    rows = [{"tenant_id": d.tenant_id, "month": d.month, "action": d.decision.action,
             "policy_id": d.decision.policy_id, "legal_hold": d.decision.legal_hold,
             "source": d.source, "decided_at": d.decided_at, "applied_at": d.applied_at}
            for d in decisions]
    stmt = dialect_insert(session, RetentionDecision).values(rows)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "month"],
        set_={c: stmt.excluded[c] for c in ("action", "policy_id", "legal_hold", "source",
                                            "decided_at", "applied_at")}))


def _drop_partitions(session: Session, now: datetime) -> list[date]:
    """Drop the ``events`` partitions of applied deletions' days that are empty now."""
    months = session.execute(sa.select(RetentionDecision.month).distinct().where(
        RetentionDecision.action == "delete", RetentionDecision.legal_hold.is_(False),
        RetentionDecision.applied_at.is_not(None))).scalars().all()
    days = [m + timedelta(days=i) for m in months for i in range((next_month(m) - m).days)]
    dropped = partitions.drop_empty_partitions(session, days)
    if dropped:
        audit.record(session, tenant_id=None, action="retention.drop_partitions",
                     principal=REQUESTED_BY, now=now,
                     details={"partitions": len(dropped), "first_day": dropped[0].isoformat(),
                              "last_day": dropped[-1].isoformat()})
    return dropped
