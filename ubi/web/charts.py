"""The geometry of the pages' score timelines, drawn by the templates as inline SVG (no
script, no library, nothing from another host): one line per dimension over the days shown,
a dashed line at 50 (the subject's own normal) and a mark for each signal on the day it was
first raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ubi.analytics.taxonomy import DIMENSIONS

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 36, 12, 22, 28
#: Dimension colours with at least 3:1 contrast on white (WCAG's non-text contrast).
COLOURS = {"activity": "#1f5fa8", "flow": "#b4261a", "collaboration": "#1d7a34",
           "agent_usage": "#6b3fa0"}
SEVERITY_COLOURS = {"INFO": "#5f6368", "WARN": "#a05a00", "CRITICAL": "#b4261a"}


@dataclass
class Line:
    dimension: str
    colour: str
    points: str
    last: float


@dataclass
class Mark:
    x: float
    y: float
    colour: str
    label: str
    anchor: str


@dataclass
class Timeline:
    width: int
    height: int
    first: date
    last: date
    lines: list[Line] = field(default_factory=list)
    grid: list[tuple[int, float]] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.lines


def timeline(history: dict[str, list[tuple[date, float]]], signals: list[dict[str, Any]], *,
             first: date, last: date) -> Timeline:
    """The chart of ``history`` (``timelines.score_history``) from ``first`` to ``last`` with
    ``signals`` (signal documents) marked."""
    span = max(1, (last - first).days)
    chart = Timeline(WIDTH, HEIGHT, first, last)

    def x(day: date) -> float:
        return round(chart.left + (chart.right - chart.left) * (day - first).days / span, 1)

    def y(value: float) -> float:
        clamped = min(100.0, max(0.0, value))
        return round(chart.bottom - (chart.bottom - chart.top) * clamped / 100, 1)

    chart.grid = [(level, y(level)) for level in (0, 25, 50, 75, 100)]
    monday = first + timedelta(days=(7 - first.weekday()) % 7)
    chart.ticks = [(x(d), d.strftime("%d %b")) for d in
                   (monday + timedelta(weeks=w) for w in range(0, span // 7 + 1, 2))
                   if d <= last]
    for dim in DIMENSIONS:
        series = [(d, v) for d, v in history.get(dim, []) if first <= d <= last]
        if series:
            chart.lines.append(Line(dim, COLOURS[dim], " ".join(
                f"{x(d)},{y(v)}" for d, v in series), round(series[-1][1])))
    for i, sig in enumerate(sorted(signals, key=lambda s: str(s.get("first_day") or s["day"]))):
        raised = sig.get("first_day") or sig["day"]
        day = raised if isinstance(raised, date) else date.fromisoformat(str(raised))
        if not first <= day <= last:
            continue
        chart.marks.append(Mark(
            x=x(day), y=chart.top - 12 + (i % 3) * 5,
            colour=SEVERITY_COLOURS.get(sig["severity"], "#000000"),
            label=f"{day.isoformat()} {sig['signal_class']} ({sig['severity']}): "
                  f"{sig['reason']}", anchor=f"signal-{sig['signal_id']}"))
    return chart
