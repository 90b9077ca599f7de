"""Freshness, ingestion gaps and the detection watermark (SPEC §9).

- A UTC day is *closed* for a tenant when the tenant's event time has moved an hour past its
  end (the data says so: backfills and replays close days as they arrive), or, for a tenant
  whose stream is live, two hours after midnight (quiet nights close by the clock). Detection
  evaluates closed days only: a half-ingested day would read as a drop.
- A tenant is in an *ingestion gap* when nothing arrived for ``stale_after_seconds`` during
  hours in which it normally has traffic (the same UTC hour of the same weekday had events in
  at least half of the last four weeks). The days of a gap are marked incomplete: they never
  feed baselines and never raise anomalies. When events flow again the gap closes by itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.models import IngestionState, TenantDay, daily_rollups
from ubi.models.session import dialect_insert
from ubi.services import configs

log = logging.getLogger("ubi.freshness")

#: Event time must pass a day's end by this much before the data closes the day.
CLOSE_GRACE = timedelta(hours=1)
#: A live tenant's day closes by the clock this long after midnight.
CLOSE_DELAY = timedelta(hours=2)
#: A tenant counts as live when something arrived this recently.
LIVE_WITHIN = timedelta(hours=36)
#: Weeks of history read to learn when a tenant normally has traffic.
TRAFFIC_WEEKS = 4


def closed_through(state: IngestionState | None, now: datetime) -> date | None:
    """The last UTC day that is closed for detection, or None when no day is."""
    if state is None or state.newest_event_at is None:
        return None
    latest_possible = now.date() - timedelta(days=1)
    by_data = (state.newest_event_at - CLOSE_GRACE).date() - timedelta(days=1)
    closed = by_data
    live = state.last_received_at is not None and now - state.last_received_at <= LIVE_WITHIN \
        and now - state.newest_event_at <= LIVE_WITHIN
    if live:
        closed = max(closed, (now - CLOSE_DELAY).date() - timedelta(days=1))
    return min(closed, latest_possible)


def detection_due(session: Session, tenant_id: str, *, now: datetime | None = None) -> bool:
    """True when a closed day has not been evaluated yet."""
    state = session.get(IngestionState, tenant_id)
    through = closed_through(state, now or clock.utcnow())
    if state is None or through is None:
        return False
    return state.last_evaluated_day is None or state.last_evaluated_day < through


def expected_traffic_hours(session: Session, tenant_id: str, today: date) -> set[tuple[int, int]]:
    """(weekday, UTC hour) pairs with events in at least half of the last four weeks."""
    start = today - timedelta(days=7 * TRAFFIC_WEEKS)
    rows = session.execute(sa.select(daily_rollups.c.day, daily_rollups.c.hours_mask).where(
        daily_rollups.c.tenant_id == tenant_id, daily_rollups.c.day >= start,
        daily_rollups.c.day < today)).all()
    per_day: dict[date, int] = {}
    for day, mask in rows:
        per_day[day] = per_day.get(day, 0) | int(mask)
    counts: dict[tuple[int, int], int] = {}
    for day, mask in per_day.items():
        for hour in range(24):
            if mask >> hour & 1:
                key = (day.weekday(), hour)
                counts[key] = counts.get(key, 0) + 1
    return {k for k, n in counts.items() if n * 2 >= TRAFFIC_WEEKS}


def _expected_between(expected: set[tuple[int, int]], start: datetime, end: datetime) -> bool:
    t = start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while t <= end:
        if (t.weekday(), t.hour) in expected:
            return True
        t += timedelta(hours=1)
    return False


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


def is_stale(session: Session, tenant_id: str, *, newest_subject_data: datetime | None = None,
             now: datetime | None = None) -> bool:
    """SPEC §6 ``stale``: the subject's newest data is older than ``stale_after_seconds``, or
    the tenant is in an ingestion gap, or its baselines were not recomputed for over a day."""
    now = now or clock.utcnow()
    config = configs.load_config(session, tenant_id)
    state = session.get(IngestionState, tenant_id)
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
