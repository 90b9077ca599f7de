"""Loading a tenant's daily rollups into the analytics' ``DailyActivity`` (set-based reads)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.activity import DailyActivity, Interactions, WorkItems
from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS
from ubi.models import DailyInteraction, DailyWorkItem, TenantDay, daily_rollups

_R = daily_rollups.c
_COUNTER_COLS = [_R[c] for c in ROLLUP_COUNTER_COLUMNS]


def first_activity_day(session: Session, tenant_id: str) -> date | None:
    return session.execute(sa.select(sa.func.min(_R.day)).where(_R.tenant_id == tenant_id)
                           ).scalar_one()


def latest_teams(session: Session, tenant_id: str, actor_ids: Iterable[str] | None = None,
                 up_to: date | None = None) -> dict[str, tuple[str, str | None]]:
    """Each actor's (actor_type, team_id) as of its latest rollup (an actor may move teams)."""
    latest = sa.select(_R.actor_id, sa.func.max(_R.day).label("day")).where(
        _R.tenant_id == tenant_id)
    if up_to is not None:
        latest = latest.where(_R.day <= up_to)
    ids = list(actor_ids) if actor_ids is not None else None
    if ids is not None:
        latest = latest.where(_R.actor_id.in_(ids))
    sub = latest.group_by(_R.actor_id).subquery()
    rows = session.execute(
        sa.select(_R.actor_id, _R.actor_type, _R.team_id).join(
            sub, sa.and_(_R.actor_id == sub.c.actor_id, _R.day == sub.c.day)).where(
            _R.tenant_id == tenant_id)).all()
    return {a: (t, team) for a, t, team in rows}


def load_activity(session: Session, tenant_id: str, start_day: date, end_day: date, *,
                  actor_ids: Iterable[str] | None = None) -> DailyActivity:
    """Rollups of ``tenant_id`` over [start_day, end_day] (inclusive) as a ``DailyActivity``.

    Subjects are the actors with at least one rollup in the range (or the given actors).
    Collaboration counterparts are flagged cross-team using every actor's latest team.
    """
    n_days = (end_day - start_day).days + 1
    if n_days <= 0:
        raise ValueError("end_day is before start_day")
    ids = sorted(set(actor_ids)) if actor_ids is not None else None
    cond = [_R.tenant_id == tenant_id, _R.day >= start_day, _R.day <= end_day]
    if ids is not None:
        cond.append(_R.actor_id.in_(ids))
    rows = session.execute(
        sa.select(_R.actor_id, _R.day, _R.hours_mask, _R.focus_minutes, _R.focus_sessions,
                  *_COUNTER_COLS).where(*cond).order_by(_R.actor_id, _R.day)).all()
    subjects = sorted({r[0] for r in rows}) if ids is None else [
        a for a in ids if a in {r[0] for r in rows}]
    index = {a: i for i, a in enumerate(subjects)}
    s = len(subjects)
    counters = np.zeros((s, n_days, len(ROLLUP_COUNTER_COLUMNS)))
    hours_mask = np.zeros((s, n_days), dtype=np.int64)
    focus_minutes = np.zeros((s, n_days))
    focus_sessions = np.zeros((s, n_days))
    if rows:
        si = np.fromiter((index[r[0]] for r in rows), dtype=np.int64, count=len(rows))
        di = np.fromiter(((r[1] - start_day).days for r in rows), dtype=np.int64,
                         count=len(rows))
        numeric = np.array([r[2:] for r in rows], dtype=np.float64)
        hours_mask[si, di] = numeric[:, 0].astype(np.int64)
        focus_minutes[si, di] = numeric[:, 1]
        focus_sessions[si, di] = numeric[:, 2]
        counters[si, di, :] = numeric[:, 3:]

    teams = latest_teams(session, tenant_id, up_to=end_day)
    actor_types = [teams.get(a, ("human", None))[0] for a in subjects]
    team_ids = [teams.get(a, ("human", None))[1] for a in subjects]

    icond = [DailyInteraction.tenant_id == tenant_id, DailyInteraction.day >= start_day,
             DailyInteraction.day <= end_day]
    if ids is not None:
        icond.append(DailyInteraction.actor_id.in_(ids))
    inter = [r for r in session.execute(sa.select(
        DailyInteraction.actor_id, DailyInteraction.day, DailyInteraction.counterpart_id,
        DailyInteraction.events).where(*icond)).all() if r[0] in index]
    codes: dict[str, int] = {}
    interactions = Interactions(
        np.array([index[r[0]] for r in inter], dtype=np.int64),
        np.array([(r[1] - start_day).days for r in inter], dtype=np.int64),
        np.array([codes.setdefault(r[2], len(codes)) for r in inter], dtype=np.int64),
        np.array([r[3] for r in inter], dtype=np.float64),
        np.array([_cross_team(teams, r[0], r[2]) for r in inter], dtype=bool))

    wcond = [DailyWorkItem.tenant_id == tenant_id, DailyWorkItem.day >= start_day,
             DailyWorkItem.day <= end_day]
    if ids is not None:
        wcond.append(DailyWorkItem.actor_id.in_(ids))
    items = [r for r in session.execute(sa.select(
        DailyWorkItem.actor_id, DailyWorkItem.day, DailyWorkItem.work_item_id,
        DailyWorkItem.llm_requests).where(*wcond)).all() if r[0] in index]
    item_codes: dict[str, int] = {}
    work_items = WorkItems(
        np.array([index[r[0]] for r in items], dtype=np.int64),
        np.array([(r[1] - start_day).days for r in items], dtype=np.int64),
        np.array([item_codes.setdefault(r[2], len(item_codes)) for r in items],
                 dtype=np.int64),
        np.array([r[3] for r in items], dtype=np.float64))
    return DailyActivity(subjects, actor_types, team_ids, start_day, counters, hours_mask,
                         focus_minutes, focus_sessions, interactions, work_items)


def _cross_team(teams: dict[str, tuple[str, str | None]], actor: str, counterpart: str) -> bool:
    own = teams.get(actor, ("", None))[1]
    other = teams.get(counterpart, ("", None))[1]
    return own is not None and other is not None and own != other


def incomplete_days(session: Session, tenant_id: str, start_day: date,
                    end_day: date) -> np.ndarray:
    """bool [D]: days of an ingestion gap (SPEC §9), never read as zero activity."""
    n_days = (end_day - start_day).days + 1
    mask = np.zeros(n_days, dtype=bool)
    for (day,) in session.execute(sa.select(TenantDay.day).where(
            TenantDay.tenant_id == tenant_id, TenantDay.reason == "gap",
            TenantDay.day >= start_day, TenantDay.day <= end_day)):
        mask[(day - start_day).days] = True
    return mask


def day_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
