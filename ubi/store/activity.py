"""Loading a tenant's daily rollups into the analytics' ``DailyActivity`` (set-based reads)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.activity import DailyActivity, Interactions, WorkItems
from ubi.analytics.calendar import day_number
from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS
from ubi.models import DailyInteraction, DailyWorkItem, TenantDay, daily_focus, daily_rollups
from ubi.models.session import is_postgres
from ubi.store import packed

_R = daily_rollups.c
_F = daily_focus.c
_COUNTER_COLS = [_R[c] for c in ROLLUP_COUNTER_COLUMNS]


def first_activity_day(session: Session, tenant_id: str) -> date | None:
    return session.execute(sa.select(sa.func.min(_R.day)).where(_R.tenant_id == tenant_id)
                           ).scalar_one()


#: PostgreSQL: each given actor's latest rollup at or before a day, one backward probe of the
#: primary key (tenant_id, actor_id, day) per actor instead of the tenant's whole history.
_LATEST_PG = (
    "SELECT u.a, l.actor_type, l.team_id FROM unnest(%(ids)b::varchar[]) AS u(a) "
    "CROSS JOIN LATERAL (SELECT r.actor_type, r.team_id FROM daily_rollups r "
    "WHERE r.tenant_id = %(t)s AND r.actor_id = u.a AND r.day <= %(b)s "
    "ORDER BY r.day DESC LIMIT 1) l")


def latest_teams(session: Session, tenant_id: str, actor_ids: Iterable[str] | None = None,
                 up_to: date | None = None) -> dict[str, tuple[str, str | None]]:
    """Each actor's (actor_type, team_id) as of its latest rollup (an actor may move teams)."""
    ids = list(actor_ids) if actor_ids is not None else None
    if ids is not None and up_to is not None and is_postgres(session):
        if not ids:
            return {}
        found: Sequence[sa.Row[str, str, str | None]] = session.connection().exec_driver_sql(
            _LATEST_PG, {"t": tenant_id, "ids": ids, "b": up_to}).all()
        return {a: (t, team) for a, t, team in found}
    latest = sa.select(_R.actor_id, sa.func.max(_R.day).label("day")).where(
        _R.tenant_id == tenant_id)
    if up_to is not None:
        latest = latest.where(_R.day <= up_to)
    if ids is not None:
        latest = latest.where(_R.actor_id.in_(ids))
    sub = latest.group_by(_R.actor_id).subquery()
    rows: Sequence[sa.Row[str, str, str | None]] = session.execute(
        sa.select(_R.actor_id, _R.actor_type, _R.team_id).join(
            sub, sa.and_(_R.actor_id == sub.c.actor_id, _R.day == sub.c.day)).where(
            _R.tenant_id == tenant_id)).all()
    return {a: (t, team) for a, t, team in rows}


def load_activity(session: Session, tenant_id: str, start_day: date, end_day: date, *,
                  actor_ids: Iterable[str] | None = None,
                  counters: Collection[str] | None = None) -> DailyActivity:
    """Rollups of ``tenant_id`` over [start_day, end_day] (inclusive) as a ``DailyActivity``.

    Subjects are the actors with at least one rollup in the range (or the given actors).
    Collaboration counterparts are flagged cross-team using every actor's latest team.
    ``counters``: only these counter columns are read (a reader that needs a few, such as
    the features step, leaves the others on the server); the others are NaN, never zeros a
    reader could take for no events.
    """
    n_days = (end_day - start_day).days + 1
    if n_days <= 0:
        raise ValueError("end_day is before start_day")
    unknown = set(counters or ()) - set(ROLLUP_COUNTER_COLUMNS)
    if unknown:
        raise KeyError(f"no counter(s) {sorted(unknown)}")
    columns = [i for i, c in enumerate(ROLLUP_COUNTER_COLUMNS)
               if counters is None or c in counters]
    ids = sorted(set(actor_ids)) if actor_ids is not None else None
    if is_postgres(session):
        return _load_activity_pg(session, tenant_id, start_day, end_day, ids, columns)
    return _load_activity_sa(session, tenant_id, start_day, end_day, ids, columns)


def _counters(s: int, n_days: int, columns: list[int]) -> np.ndarray:
    """float64 [S, D, counters]: zeros in the ``columns`` read, NaN in the others."""
    out = np.full((s, n_days, len(ROLLUP_COUNTER_COLUMNS)), np.nan)
    out[:, :, columns] = 0.0
    return out


def _load_activity_sa(session: Session, tenant_id: str, start_day: date, end_day: date,
                      ids: list[str] | None, columns: list[int]) -> DailyActivity:
    """Any database (SQLite's path; on PostgreSQL the reference of the COPY path's tests)."""
    n_days = (end_day - start_day).days + 1
    cond = [_R.tenant_id == tenant_id, _R.day >= start_day, _R.day <= end_day]
    if ids is not None:
        cond.append(_R.actor_id.in_(ids))
    focus = sa.and_(_F.tenant_id == _R.tenant_id, _F.actor_id == _R.actor_id, _F.day == _R.day)
    rows = session.execute(
        sa.select(_R.actor_id, _R.day, _R.hours_mask, _R.local_days,
                  sa.func.coalesce(_F.focus_minutes, 0.0), sa.func.coalesce(_F.focus_sessions, 0),
                  *(_COUNTER_COLS[i] for i in columns))
        .select_from(daily_rollups.outerjoin(daily_focus, focus))
        .where(*cond).order_by(_R.actor_id, _R.day)).all()
    subjects = sorted({r[0] for r in rows}) if ids is None else [
        a for a in ids if a in {r[0] for r in rows}]
    index = {a: i for i, a in enumerate(subjects)}
    s = len(subjects)
    counters = _counters(s, n_days, columns)
    hours_mask = np.zeros((s, n_days), dtype=np.int64)
    local_days = np.zeros((s, n_days), dtype=np.int64)
    focus_minutes = np.zeros((s, n_days))
    focus_sessions = np.zeros((s, n_days))
    if rows:
        si = np.fromiter((index[r[0]] for r in rows), dtype=np.int64, count=len(rows))
        di = np.fromiter(((r[1] - start_day).days for r in rows), dtype=np.int64,
                         count=len(rows))
        numeric = np.array([r[2:] for r in rows], dtype=np.float64)
        hours_mask[si, di] = numeric[:, 0].astype(np.int64)
        local_days[si, di] = numeric[:, 1].astype(np.int64)
        focus_minutes[si, di] = numeric[:, 2]
        focus_sessions[si, di] = numeric[:, 3]
        counters[si[:, None], di[:, None], np.array(columns)[None, :]] = numeric[:, 4:]

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
                         focus_minutes, focus_sessions, interactions, work_items,
                         local_days=local_days)


# --- PostgreSQL: rows packed by the server straight into numpy -----------------------------

def _read(session: Session, query: str, params: dict[str, Any],
          fields: list[tuple[str, str]], repeated: tuple[str, str, int] | None = None,
          labels: str | None = None) -> packed.Packed:
    """``packed.read`` of ``query`` grouped by its actor column ``actor_id``."""
    conn = session.connection()
    # These reads scan whole ranges: hash joins are always right, while nested loops chosen
    # on stale statistics (right after a bulk load) were measured 400x slower.
    conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    try:
        return packed.read(session, query, params, fields, repeated, group_by="actor_id",
                           labels=labels)
    finally:
        conn.exec_driver_sql("SET LOCAL enable_nestloop = on")


def _load_activity_pg(session: Session, tenant_id: str, start_day: date, end_day: date,
                      ids: list[str] | None, columns: list[int]) -> DailyActivity:
    n_days = (end_day - start_day).days + 1
    params: dict[str, Any] = {"t": tenant_id, "a": start_day, "b": end_day}
    conn = session.connection()
    if ids is None:
        ids = list(conn.exec_driver_sql(
            "SELECT DISTINCT actor_id FROM daily_rollups WHERE tenant_id = %(t)s "
            "AND day BETWEEN %(a)s AND %(b)s ORDER BY actor_id", params).scalars())
    epoch0 = day_number(start_day)
    # The subjects are the actors of ``ids`` with rollups in the window (found by this read,
    # not by a query of their own), in the order of ``ids``.
    params["ids"] = ids
    counter_sql = ", ".join(f'r."{ROLLUP_COUNTER_COLUMNS[c]}"::int4 AS c{i}'
                            for i, c in enumerate(columns))
    found, group, recs, _ = _read(session, (
        f"SELECT r.actor_id, (r.day - DATE '1970-01-01')::int4 - {epoch0} AS d, "
        f"r.hours_mask::int4 AS h, r.local_days::int4 AS ld, "
        f"COALESCE(f.focus_minutes, 0)::float8 AS fm, "
        f"COALESCE(f.focus_sessions, 0)::int4 AS fs, {counter_sql} "
        f"FROM daily_rollups r LEFT JOIN daily_focus f ON f.tenant_id = r.tenant_id "
        f"AND f.actor_id = r.actor_id AND f.day = r.day "
        f"WHERE r.tenant_id = %(t)s AND r.actor_id = ANY(%(ids)b::varchar[]) "
        f"AND r.day BETWEEN %(a)s AND %(b)s"), params,
        [("d", ">i4"), ("h", ">i4"), ("ld", ">i4"), ("fm", ">f8"), ("fs", ">i4")],
        repeated=("c", ">i4", len(columns)))
    has_rows = set(found)
    subjects = [a for a in ids if a in has_rows]
    index = {a: i for i, a in enumerate(subjects)}
    s = len(subjects)
    counters = _counters(s, n_days, columns)
    hours_mask = np.zeros((s, n_days), dtype=np.int64)
    local_days = np.zeros((s, n_days), dtype=np.int64)
    focus_minutes = np.zeros((s, n_days))
    focus_sessions = np.zeros((s, n_days))
    if not s:
        return DailyActivity(subjects, [], [], start_day, counters, hours_mask, focus_minutes,
                             focus_sessions, Interactions.empty(), WorkItems.empty(),
                             local_days=local_days)

    def codes(keys: list[str], row_group: np.ndarray) -> np.ndarray:
        """Each row's subject code (its actor's place in ``subjects``)."""
        return np.array([index[a] for a in keys], dtype=np.int64)[row_group]

    si, di = codes(found, group), recs["d"].astype(np.int64)
    hours_mask[si, di] = recs["h"]
    local_days[si, di] = recs["ld"]
    focus_minutes[si, di] = recs["fm"]
    focus_sessions[si, di] = recs["fs"]
    if len(columns) == len(ROLLUP_COUNTER_COLUMNS):
        counters[si, di] = recs["c"]  # every counter of a row in one scatter
    else:
        counters[si[:, None], di[:, None], np.array(columns)[None, :]] = recs["c"]

    params["ids"] = subjects
    # The subjects' interactions, counterparts numbered here in the order met (codes only
    # tell counterparts apart); then the latest team of every subject and counterpart
    # (cross-team flags, SPEC §5.1), looked up for those actors only.
    keys, group, inter, part_ids = _read(session, (
        f"SELECT i.actor_id, (i.day - DATE '1970-01-01')::int4 - {epoch0} AS d, "
        f"i.events::float8 AS n, i.counterpart_id FROM daily_interactions i "
        f"WHERE i.tenant_id = %(t)s AND i.actor_id = ANY(%(ids)b::varchar[]) "
        f"AND i.day BETWEEN %(a)s AND %(b)s"), params,
        [("d", ">i4"), ("n", ">f8")], labels="counterpart_id")
    parts, c_codes = _number(part_ids)
    teams = latest_teams(session, tenant_id, sorted(set(subjects) | set(parts)), up_to=end_day)
    actor_types = [teams.get(a, ("human", None))[0] for a in subjects]
    team_ids = [teams.get(a, ("human", None))[1] for a in subjects]
    # Team codes (-1: none): cross-team where both are known and differ.
    team_code: dict[str | None, int] = {None: -1}
    own = np.array([team_code.setdefault(t, len(team_code)) for t in team_ids], dtype=np.int64)
    other = np.array([team_code.setdefault(teams.get(p, ("", None))[1], len(team_code))
                      for p in parts], dtype=np.int64)
    s_codes = codes(keys, group)
    cross = (own[s_codes] >= 0) & (other[c_codes] >= 0) & (own[s_codes] != other[c_codes])
    interactions = Interactions(s_codes, inter["d"].astype(np.int64), c_codes,
                                inter["n"].astype(np.float64), cross)
    # Work items numbered here in the order met (codes only tell items apart): a dense_rank
    # in the query sorted every row, twice the server's CPU of the read.
    keys, group, items, item_ids = _read(session, (
        f"SELECT w.actor_id, (w.day - DATE '1970-01-01')::int4 - {epoch0} AS d, "
        f"w.llm_requests::float8 AS n, w.work_item_id FROM daily_work_items w "
        f"WHERE w.tenant_id = %(t)s AND w.actor_id = ANY(%(ids)b::varchar[]) "
        f"AND w.day BETWEEN %(a)s AND %(b)s"), params,
        [("d", ">i4"), ("n", ">f8")], labels="work_item_id")
    work_items = WorkItems(codes(keys, group), items["d"].astype(np.int64),
                           _number(item_ids)[1], items["n"].astype(np.float64))
    return DailyActivity(subjects, actor_types, team_ids, start_day, counters, hours_mask,
                         focus_minutes, focus_sessions, interactions, work_items,
                         local_days=local_days)


def _number(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct labels in the order met, and each label's place among them (int64)."""
    distinct = list(dict.fromkeys(labels))
    place = {label: i for i, label in enumerate(distinct)}
    return distinct, np.fromiter(map(place.__getitem__, labels), dtype=np.int64,
                                 count=len(labels))


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
