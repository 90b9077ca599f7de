"""Freshness, ingestion gaps and closing days (SPEC §9).

- A UTC day is *closed* for a tenant, and detection may evaluate it, when either
  - the data says so: the tenant's event time has passed the day's end by ``CLOSE_GRACE``
    (backfills and replays close days as their events arrive), or
  - the clock says so: the day's end plus ``CLOSE_GRACE`` has passed and the tenant's usual
    traffic expected nothing more between its newest event and that moment (an evening, a
    weekend), so a team that stops on Friday evening has Friday evaluated on Saturday
    morning. Only for a tenant whose events arrive as they happen (its newest event was
    received within ``CLOSE_GRACE`` of occurring, which a backfill or replay of old data never
    is) and whose usual hours are learnt from ``TRAFFIC_WEEKS`` weeks of traffic; otherwise
    only the data closes days, so a half-ingested day is never evaluated.
  Detection evaluates closed days only: a half-ingested day would read as a drop.
- A tenant is in an *ingestion gap* when nothing arrived for ``stale_after_seconds`` during
  hours in which it normally has traffic (the same UTC hour of the same weekday had events in
  at least half of the last four weeks). The days of a gap are marked incomplete: they never
  feed baselines and never raise anomalies. When events flow again the gap closes by itself.
  A day whose usual traffic went missing does not close by the clock either: the data closes
  it once events flow again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Batch, IngestionState, TenantDay, daily_rollups
from ubi.models.session import dialect_insert
from ubi.services import configs, feature_refresh

log = logging.getLogger("ubi.freshness")

#: How long after a day's end (in event time, or by the clock) the day closes.
CLOSE_GRACE = timedelta(hours=1)
#: Weeks of history read to learn when a tenant normally has traffic.
TRAFFIC_WEEKS = 4
#: How long a batch accepted and not yet stored holds back the evaluation of a backfill: one
#: stuck longer (a dead-lettered batch, a web process that died before its publish) does not.
PENDING_BATCH_BOUND = timedelta(minutes=15)
_HOUR = timedelta(hours=1)
_WEEK_HOURS = 7 * 24

#: (weekday, UTC hour) slots in which a tenant usually has traffic.
UsualHours = Collection[tuple[int, int]]


def arrives_as_it_happens(newest_event_at: datetime | None,
                          newest_event_received_at: datetime | None) -> bool:
    """True when the tenant's newest event was received within ``CLOSE_GRACE`` of occurring
    (a live stream); a backfill or replay of older data never is."""
    return (newest_event_at is not None and newest_event_received_at is not None
            and newest_event_received_at - newest_event_at <= CLOSE_GRACE)


def first_usual_hour(usual: UsualHours, after: datetime, before: datetime) -> datetime | None:
    """Start of the first usual traffic hour that begins after ``after``'s hour and before
    ``before``, or None. The slots repeat weekly, so one week is searched at most."""
    t = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + _HOUR
    for _ in range(_WEEK_HOURS):
        if t >= before:
            return None
        if (t.weekday(), t.hour) in usual:
            return t
        t += _HOUR
    return None


def last_closed_day(newest_event_at: datetime | None, newest_event_received_at: datetime | None,
                    now: datetime, usual_hours: Callable[[], UsualHours | None]) -> date | None:
    """The last UTC day that is closed for detection, or None when no day is.

    ``usual_hours`` returns the tenant's usual traffic hours, or None while they are not learnt
    from ``TRAFFIC_WEEKS`` weeks; it is called only when the clock could close a day the data
    has not closed.
    """
    if newest_event_at is None:
        return None
    by_data = min((newest_event_at - CLOSE_GRACE).date(), now.date()) - timedelta(days=1)
    ended = (now - CLOSE_GRACE).date() - timedelta(days=1)  # its end + grace has passed
    if ended <= by_data or not arrives_as_it_happens(newest_event_at, newest_event_received_at):
        return by_data
    usual = usual_hours()
    if usual is None:
        return by_data
    # A day closes by the clock when no usual hour began between the newest event and the
    # day's end + grace: nothing of it was still due. A usual hour without traffic is a gap.
    end_of_ended = datetime.combine(ended + timedelta(days=1), time(), tzinfo=UTC)
    due = first_usual_hour(usual, newest_event_at, end_of_ended + CLOSE_GRACE)
    if due is None:
        return ended
    return max(by_data, (due - CLOSE_GRACE).date() - timedelta(days=1))


def closed_through(session: Session, state: IngestionState | None,
                   now: datetime) -> date | None:
    """The last UTC day of the tenant that is closed for detection, or None."""
    if state is None:
        return None
    return last_closed_day(
        state.newest_event_at, state.newest_event_received_at, now,
        lambda: learnt_traffic_hours(session, state.tenant_id, now.date()))


def detection_due(session: Session, tenant_id: str, *, now: datetime | None = None) -> bool:
    """True when a closed day has not been evaluated yet, or evaluated days are owed a
    recompute of their aggregate features (``feature_refresh.GROUPS``)."""
    state = session.get(IngestionState, tenant_id)
    through = closed_through(session, state, now or clock.utcnow())
    if state is None or through is None:
        return False
    if state.last_evaluated_day is None or state.last_evaluated_day < through:
        return True
    return feature_refresh.any_pending(session, tenant_id, feature_refresh.GROUPS)


def batches_pending(session: Session, tenant_id: str, now: datetime) -> bool:
    """True while the tenant has batches accepted within ``PENDING_BATCH_BOUND`` and not yet
    stored: a backfill still arriving, possibly out of order across ingest workers."""
    return session.execute(sa.select(sa.literal(1)).where(
        Batch.tenant_id == tenant_id, Batch.status.in_(("queued", "processing")),
        Batch.created_at >= now - PENDING_BATCH_BOUND).limit(1)).first() is not None


def backfill_arriving(session: Session, state: IngestionState, now: datetime) -> bool:
    """True when detection should not evaluate yet: the tenant's first evaluation, or a
    replay of past days (not a live stream), while more of its accepted batches are still to
    be stored. Evaluated days are final, so evaluating a day whose events are in a batch still
    queued, or a first run that starts after the first days of history that arrive later, would
    lose those events for good (a new tenant posting its history in any order, over several
    ingest workers)."""
    live = arrives_as_it_happens(state.newest_event_at, state.newest_event_received_at)
    if state.last_evaluated_day is not None and live:
        return False
    return batches_pending(session, state.tenant_id, now)


def _traffic_days(session: Session, tenant_id: str, today: date) -> dict[date, int]:
    """Hours with events (bit h = UTC hour h) of each day of the last ``TRAFFIC_WEEKS`` weeks."""
    start = today - timedelta(days=7 * TRAFFIC_WEEKS)
    r = daily_rollups.c
    rows: Sequence[sa.Row[date, int]] = session.execute(sa.select(r.day, r.hours_mask).where(
        r.tenant_id == tenant_id, r.day >= start, r.day < today)).all()
    per_day: dict[date, int] = {}
    for day, mask in rows:
        per_day[day] = per_day.get(day, 0) | int(mask)
    return per_day


def _usual_slots(per_day: dict[date, int]) -> set[tuple[int, int]]:
    counts: dict[tuple[int, int], int] = {}
    for day, mask in per_day.items():
        for hour in range(24):
            if mask >> hour & 1:
                key = (day.weekday(), hour)
                counts[key] = counts.get(key, 0) + 1
    return {k for k, n in counts.items() if n * 2 >= TRAFFIC_WEEKS}


def expected_traffic_hours(session: Session, tenant_id: str, today: date) -> set[tuple[int, int]]:
    """(weekday, UTC hour) pairs with events in at least half of the last four weeks."""
    return _usual_slots(_traffic_days(session, tenant_id, today))


def learnt_traffic_hours(session: Session, tenant_id: str,
                         today: date) -> frozenset[tuple[int, int]] | None:
    """The usual traffic hours when they are learnt from traffic in each of the last
    ``TRAFFIC_WEEKS`` weeks, else None (too little history to let the clock close days)."""
    per_day = _traffic_days(session, tenant_id, today)
    weeks = {(today - day).days // 7 for day in per_day}
    if len(weeks) < TRAFFIC_WEEKS:
        return None
    return frozenset(_usual_slots(per_day))


def _expected_between(expected: set[tuple[int, int]], start: datetime, end: datetime) -> bool:
    return first_usual_hour(expected, start, end + timedelta(microseconds=1)) is not None


@dataclass
class GapReport:
    tenant_id: str
    gap_open: bool
    marked_days: list[date]
    stale: bool


def mark_gap_days(session: Session, tenant_id: str, first: date, last: date,
                  now: datetime, detail: dict[str, str]) -> list[date]:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if days:
        stmt = dialect_insert(session, TenantDay.__table__).values([
            {"tenant_id": tenant_id, "day": d, "reason": "gap", "marked_at": now,
             "detail": detail} for d in days])
        session.execute(stmt.on_conflict_do_nothing(
            index_elements=["tenant_id", "day", "reason"]))
    return days


def track_tenant(session: Session, tenant_id: str, *, now: datetime | None = None) -> GapReport:
    """Open, extend or close the tenant's ingestion gap (run every minute by beat)."""
    now = now or clock.utcnow()
    state = session.get(IngestionState, tenant_id, with_for_update=True)
    if state is None or state.last_received_at is None:
        return GapReport(tenant_id, False, [], False)
    config = configs.load_config(session, tenant_id)
    stale_after = timedelta(seconds=config.stale_after_seconds)
    silent_for = now - state.last_received_at
    marked: list[date] = []
    if state.gap_open_since is not None and state.last_received_at > state.gap_open_since:
        # Events flow again: the gap ends; its days (first and last partial) stay incomplete.
        marked = mark_gap_days(session, tenant_id, state.gap_open_since.date(),
                               state.last_received_at.date(), now,
                               {"from": state.gap_open_since.isoformat(),
                                "to": state.last_received_at.isoformat()})
        log.info("ingestion gap closed", extra={"ubi": {"tenant_id": tenant_id,
                                                        "days": len(marked)}})
        state.gap_open_since = None
    elif silent_for > stale_after:
        if state.gap_open_since is None:
            expected = expected_traffic_hours(session, tenant_id, now.date())
            if _expected_between(expected, state.last_received_at, now):
                state.gap_open_since = state.last_received_at
                log.warning("ingestion gap opened", extra={"ubi": {
                    "tenant_id": tenant_id, "since": state.last_received_at.isoformat()}})
        if state.gap_open_since is not None:
            marked = mark_gap_days(session, tenant_id, state.gap_open_since.date(), now.date(),
                                   now, {"from": state.gap_open_since.isoformat()})
    state.updated_at = now
    return GapReport(tenant_id, state.gap_open_since is not None, marked,
                     silent_for > stale_after)


class TenantState(NamedTuple):
    """What a read needs of a tenant's ``ingestion_state``: the day it describes and what
    decides ``stale``."""

    last_evaluated_day: date | None
    newest_event_at: datetime | None
    gap_open_since: datetime | None
    last_baseline_recompute_at: datetime | None


_S = IngestionState
#: Built once (a read per request): loading the ORM entity cost a tenth of a profile's CPU.
_READ_STATE = sa.select(_S.last_evaluated_day, _S.newest_event_at, _S.gap_open_since,
                        _S.last_baseline_recompute_at).where(
    _S.tenant_id == sa.bindparam("tenant_id"))


def read_state(session: Session, tenant_id: str) -> TenantState | None:
    """The tenant's state for a read, or None when UBI never stored anything for it."""
    row = session.execute(_READ_STATE, {"tenant_id": tenant_id}).one_or_none()
    return None if row is None else TenantState(*row)


def is_stale(session: Session, tenant_id: str, *, newest_subject_data: datetime | None = None,
             now: datetime | None = None) -> bool:
    """SPEC §6 ``stale``: the subject's newest data is older than ``stale_after_seconds``, or
    the tenant is in an ingestion gap, or its baselines were not recomputed for over a day."""
    return stale(read_state(session, tenant_id), configs.load_config(session, tenant_id),
                 newest_subject_data=newest_subject_data, now=now)


def stale(state: TenantState | None, config: TenantConfig, *,
          newest_subject_data: datetime | None = None, now: datetime | None = None) -> bool:
    """``is_stale`` of a tenant state a read already holds (one read of it per request)."""
    now = now or clock.utcnow()
    if state is None:
        return True
    limit = timedelta(seconds=config.stale_after_seconds)
    if newest_subject_data is not None and now - newest_subject_data > limit:
        return True
    if state.gap_open_since is not None:
        return True
    recompute = state.last_baseline_recompute_at
    return recompute is None or now - recompute > timedelta(hours=26)


def tenants(session: Session) -> list[str]:
    return list(session.execute(sa.select(IngestionState.tenant_id).order_by(
        IngestionState.tenant_id)).scalars())
