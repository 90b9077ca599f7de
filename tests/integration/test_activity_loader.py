"""PostgreSQL's activity loader (binary COPYs, latest teams looked up per needed actor) reads
what the portable SQLAlchemy loader reads, on a tenant with a past: team moves, actors and
counterparts outside the window, rows after its end, another tenant."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity
from ubi.analytics.features import FEATURE_COUNTERS
from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS
from ubi.models import DailyInteraction, DailyWorkItem, daily_focus, daily_rollups
from ubi.models.base import table_of
from ubi.store import activity

END = date(2026, 6, 17)
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)


def fill(session: Session, tenant: str, seed: int) -> None:
    rng = random.Random(seed)
    actors = [f"u{i:02d}" for i in range(14)] + ["Zed", "_x", "é1"]  # not only lowercase
    rollups: list[dict[str, Any]] = []
    inter: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    focus: list[dict[str, Any]] = []
    for a in actors:
        moved = rng.randrange(0, 90)  # the day the actor moves to another team
        for back in range(-3, 90):  # 3 days after END too (ignored: latest as of END)
            if rng.random() < 0.4:
                continue
            day = END - timedelta(days=back)
            rollups.append({
                "tenant_id": tenant, "actor_id": a, "day": day,
                "actor_type": "ai_agent" if a.startswith("_") else "human",
                "team_id": None if a == "Zed" else ("red" if back > moved else "blue")
                if a < "u07" else ("blue" if back > moved else "green"),
                "hours_mask": rng.randrange(1 << 24), "local_days": rng.choice([2, 3, 6]),
                "updated_at": NOW,
                **{c: rng.randrange(5) for c in ROLLUP_COUNTER_COLUMNS}})
            if rng.random() < 0.3:
                focus.append({"tenant_id": tenant, "actor_id": a, "day": day,
                              "focus_minutes": rng.random() * 120,
                              "focus_sessions": rng.randrange(1, 4), "updated_at": NOW})
            for c in rng.sample([*actors, "ghost", "old-timer"], 3):
                if c != a:
                    inter.append({"tenant_id": tenant, "actor_id": a, "day": day,
                                  "counterpart_id": c, "events": rng.randrange(1, 9)})
            for w in rng.sample(["W-1", "W-2", "w-3", "W-10"], 2):
                items.append({"tenant_id": tenant, "actor_id": a, "day": day,
                              "work_item_id": w, "events": 1,
                              "llm_requests": rng.randrange(4)})
    # Someone with rollups only long before any window read here.
    rollups.append({"tenant_id": tenant, "actor_id": "old-timer", "day": END - timedelta(days=200),
                    "actor_type": "human", "team_id": "red", "hours_mask": 1,
                    "local_days": 2, "updated_at": NOW,
                    **{c: 1 for c in ROLLUP_COUNTER_COLUMNS}})
    session.execute(daily_rollups.insert(), rollups)
    session.execute(daily_focus.insert(), focus)
    session.execute(table_of(DailyInteraction).insert(), inter)
    session.execute(table_of(DailyWorkItem).insert(), items)
    session.commit()


def canonical(a: DailyActivity) -> dict[str, Any]:
    """The activity with codes replaced by what they stand for (subject ids; counterparts and
    work items by the partition of rows they group)."""
    ids = a.subject_ids
    out: dict[str, Any] = {"subjects": ids, "types": a.actor_types, "teams": a.team_ids}
    for name in ("counters", "hours_mask", "focus_minutes", "focus_sessions", "local_days"):
        out[name] = np.asarray(getattr(a, name)).tolist()
    i = a.interactions
    rows = sorted(zip((ids[s] for s in i.subject.tolist()), i.day.tolist(),
                      i.counterpart.tolist(), i.count.tolist(), i.cross_team.tolist(),
                      strict=True))
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for s, d, c, n, x in rows:
        groups.setdefault(c, []).append((s, d, n, x))
    out["interactions"] = sorted((s, d, n, x) for s, d, _, n, x in rows)
    out["counterparts"] = sorted(groups.values())
    w = a.work_items
    wrows = sorted(zip((ids[s] for s in w.subject.tolist()), w.day.tolist(), w.item.tolist(),
                       w.llm_requests.tolist(), strict=True))
    wgroups: dict[int, list[tuple[Any, ...]]] = {}
    for s, d, c, n in wrows:
        wgroups.setdefault(c, []).append((s, d, n))
    out["work_items"] = sorted((s, d, n) for s, d, _, n in wrows)
    out["items"] = sorted(wgroups.values())
    return out


@pytest.mark.parametrize("days", [1, 29, 60])
def test_postgres_loader_reads_what_the_portable_loader_reads(db_session: Session,
                                                              days: int) -> None:
    fill(db_session, "acme", 1)
    fill(db_session, "other", 2)
    start = END - timedelta(days=days - 1)
    rng = random.Random(days)
    for ids in (None, ["u03", "u11", "Zed", "é1", "nobody"],
                rng.sample([f"u{i:02d}" for i in range(14)], 5)):
        pg = activity.load_activity(db_session, "acme", start, END, actor_ids=ids)
        portable = activity._load_activity_sa(
            db_session, "acme", start, END, sorted(set(ids)) if ids is not None else None,
            list(range(len(ROLLUP_COUNTER_COLUMNS))))
        assert pg.n_subjects > 0 and len(pg.interactions.day) > 0
        assert sorted(pg.subject_ids) == portable.subject_ids  # (the database's order)
        order = [pg.subject_ids.index(s) for s in portable.subject_ids]
        assert canonical(reorder(pg, order)) == canonical(portable)
        # The features step's read: its counters as in the full read, the others NaN.
        read = [COUNTER_INDEX[c] for c in FEATURE_COUNTERS]
        for part in (activity.load_activity(db_session, "acme", start, END, actor_ids=ids,
                                            counters=FEATURE_COUNTERS),
                     activity._load_activity_sa(
                         db_session, "acme", start, END,
                         sorted(set(ids)) if ids is not None else None, sorted(read))):
            assert part.subject_ids == pg.subject_ids
            assert np.array_equal(part.counters[:, :, read], pg.counters[:, :, read])
            assert np.isnan(np.delete(part.counters, read, axis=2)).all()
            part.counters = pg.counters
            assert canonical(part) == canonical(pg)
    db_session.rollback()


def reorder(a: DailyActivity, order: list[int]) -> DailyActivity:
    """``a`` with its subjects in ``order`` (positions in ``a``)."""
    if order == list(range(len(order))):
        return a
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    i, w = a.interactions, a.work_items
    return DailyActivity(
        [a.subject_ids[k] for k in order], [a.actor_types[k] for k in order],
        [a.team_ids[k] for k in order], a.start_day, a.counters[order], a.hours_mask[order],
        a.focus_minutes[order], a.focus_sessions[order],
        type(i)(inverse[i.subject], i.day, i.counterpart, i.count, i.cross_team),
        type(w)(inverse[w.subject], w.day, w.item, w.llm_requests),
        local_days=None if a.local_days is None else a.local_days[order])
