"""Build ``DailyActivity`` inputs from readable per-day dicts.

A day dict maps canonical event types to counts, plus optional keys:
``after_hours`` / ``late_night`` (counts), ``hours`` (UTC hours with events; default: hour 10
if there are events), ``focus`` ((minutes, sessions)), ``with`` (list of (counterpart,
count[, cross_team])) and ``items`` (list of (work item, llm requests)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity, Interactions, WorkItems
from ubi.analytics.taxonomy import CANONICAL_EVENT_TYPES, ROLLUP_COUNTER_COLUMNS

MONDAY = date(2024, 1, 1)  # a Monday

Day = dict[str, Any]


@dataclass
class Actor:
    actor_id: str
    days: dict[int, Day] = field(default_factory=dict)
    actor_type: str = "human"
    team: str | None = None


def make_activity(actors: Sequence[Actor], n_days: int, start: date = MONDAY) -> DailyActivity:
    n_s = len(actors)
    counters = np.zeros((n_s, n_days, len(ROLLUP_COUNTER_COLUMNS)))
    hours = np.zeros((n_s, n_days), dtype=np.int64)
    focus_m = np.zeros((n_s, n_days))
    focus_n = np.zeros((n_s, n_days))
    codes: dict[str, int] = {}
    inter: list[tuple[int, int, int, float, bool]] = []
    items: list[tuple[int, int, int, float]] = []
    for s, a in enumerate(actors):
        for d, day in a.days.items():
            if not 0 <= d < n_days:
                continue
            total = 0
            for key, value in day.items():
                if key in CANONICAL_EVENT_TYPES:
                    counters[s, d, COUNTER_INDEX[f"n_{key}"]] += value
                    total += value
                elif key in ("after_hours", "late_night"):
                    counters[s, d, COUNTER_INDEX[key]] += value
            counters[s, d, COUNTER_INDEX["event_count"]] += day.get("event_count", total)
            hs = day.get("hours", [10] if total else [])
            for h in hs:
                hours[s, d] |= 1 << h
            if "focus" in day:
                focus_m[s, d], focus_n[s, d] = day["focus"]
            for entry in day.get("with", []):
                name, count = entry[0], entry[1]
                cross = entry[2] if len(entry) > 2 else False
                code = codes.setdefault(name, len(codes))
                inter.append((s, d, code, float(count), bool(cross)))
            for name, llm in day.get("items", []):
                code = codes.setdefault("item:" + name, len(codes))
                items.append((s, d, code, float(llm)))

    def col(rows: list[tuple], i: int, dtype: Any) -> np.ndarray:
        return np.array([r[i] for r in rows], dtype=dtype)

    interactions = Interactions(col(inter, 0, np.int64), col(inter, 1, np.int64),
                                col(inter, 2, np.int64), col(inter, 3, np.float64),
                                col(inter, 4, bool))
    work = WorkItems(col(items, 0, np.int64), col(items, 1, np.int64), col(items, 2, np.int64),
                     col(items, 3, np.float64))
    return DailyActivity([a.actor_id for a in actors], [a.actor_type for a in actors],
                         [a.team for a in actors], start, counters, hours, focus_m, focus_n,
                         interactions, work)


def is_workday(d: int, start: date = MONDAY) -> bool:
    return (start.weekday() + d) % 7 < 5


def workdays(n_days: int, start: date = MONDAY) -> list[int]:
    return [d for d in range(n_days) if is_workday(d, start)]
