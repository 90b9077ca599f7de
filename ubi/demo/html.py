"""The demo's HTML report: group score timelines with the signals raised on them.

One self-contained page (inline SVG, no scripts, no network): for every team that has team
scores (at least ``min_team_size`` actors), the four dimension scores of the 7-day window
day by day (50 is the team's own normal, higher is healthier), and a marker for every signal
of the team or one of its members on the day it was first raised, listed below the chart.
Then the same for the whole tenant, with the signals of the tenant, its cohorts and actors in
no team: a real history without teams (``ubi demo --real``) is shown there. A range of years
is drawn in steps of several days (the mean of each step) with month or year ticks.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from ubi.analytics.taxonomy import DIMENSIONS
from ubi.demo.report import episodes_in_order
from ubi.demo.runner import DemoResult
from ubi.settings import Settings

WIDTH, HEIGHT, PAD = 860, 240, 40
COLOURS = {"activity": "#1f77b4", "flow": "#d62728", "collaboration": "#2ca02c",
           "agent_usage": "#9467bd"}
SEVERITY_COLOURS = {"INFO": "#7f7f7f", "WARN": "#ff7f0e", "CRITICAL": "#d62728"}


MAX_POINTS = 400  # per line: about one per 2 px; longer ranges are averaged in steps
MAX_TICKS = 12

#: (scope, subject) -> dimension -> day -> 7-day score, for the team and tenant scopes.
GroupScores = dict[tuple[str, str], dict[str, dict[date, float]]]


def _group_scores(settings: Settings, tenant_id: str) -> GroupScores:
    from ubi.models import Score, session_scope

    out: GroupScores = defaultdict(lambda: defaultdict(dict))
    with session_scope(settings) as s:
        for scope, subject, dim, day, score in s.execute(sa.select(
                Score.actor_scope, Score.subject_id, Score.dimension, Score.day,
                Score.score).where(
                Score.tenant_id == tenant_id, Score.actor_scope.in_(("team", "tenant")),
                Score.window == "7d", Score.score.is_not(None))):
            out[(scope, subject)][dim][day] = float(cast(float, score))  # IS NOT NULL above
    return out


def _step_days(first: date, last: date) -> int:
    """Days per drawn point: 1 up to ``MAX_POINTS`` days, more for longer ranges."""
    return max(1, math.ceil(((last - first).days + 1) / MAX_POINTS))


def _in_steps(series: dict[date, float], first: date, step: int) -> list[tuple[date, float]]:
    """The series as the mean of each ``step``-day step, at the step's middle day."""
    if step == 1:
        return sorted(series.items())
    steps: dict[int, list[float]] = defaultdict(list)
    for day, value in series.items():
        steps[(day - first).days // step].append(value)
    return [(first + timedelta(days=i * step + step // 2), sum(v) / len(v))
            for i, v in sorted(steps.items())]


def _ticks(first: date, last: date) -> list[tuple[date, str]]:
    """Axis labels: Mondays for a few weeks, month starts for months, years for years; the
    finest spacing that gives at most ``MAX_TICKS``."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    spacings: list[tuple[Any, str]] = [(lambda d: d.weekday() == 0, "%d %b")]
    spacings += [(lambda d, k=k: d.day == 1 and (d.month - 1) % k == 0, "%b %Y")
                 for k in (1, 3, 6)]
    spacings += [(lambda d, k=k: d.day == 1 and d.month == 1 and d.year % k == 0, "%Y")
                 for k in (1, 2, 5, 10, 25)]
    ticks: list[tuple[date, str]] = []
    for keep, fmt in spacings:
        ticks = [(d, d.strftime(fmt)) for d in days if keep(d)]
        if len(ticks) <= MAX_TICKS:
            break
    return ticks


def _chart(scores: dict[str, dict[date, float]], first: date, last: date,
           marks: list[dict[str, Any]]) -> str:
    span = max(1, (last - first).days)
    step = _step_days(first, last)

    def x(day: date) -> float:
        return PAD + (WIDTH - 2 * PAD) * (day - first).days / span

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / 100

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">']
    for level in (0, 25, 50, 75, 100):
        dash = "" if level != 50 else ' stroke-dasharray="4 3"'
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(level):.1f}" '
                     f'y2="{y(level):.1f}" stroke="#ddd"{dash}/>'
                     f'<text x="{PAD - 6}" y="{y(level) + 4:.1f}" text-anchor="end">{level}</text>')
    for day, label in _ticks(first, last):
        parts.append(f'<text x="{x(day):.1f}" y="{HEIGHT - PAD + 16}" '
                     f'text-anchor="middle">{label}</text>')
    for dim in DIMENSIONS:
        series = _in_steps(scores.get(dim, {}), first, step)
        if len(series) < 2:
            continue
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in series)
        parts.append(f'<polyline fill="none" stroke="{COLOURS[dim]}" stroke-width="1.8" '
                     f'points="{points}"><title>{dim}</title></polyline>')
    for i, m in enumerate(marks):
        colour = SEVERITY_COLOURS.get(m["severity"], "#000")
        mx = x(m["first_day"])
        parts.append(f'<circle cx="{mx:.1f}" cy="{PAD - 14 + (i % 3) * 6}" r="4" '
                     f'fill="{colour}"><title>{html.escape(m["label"])}</title></circle>'
                     f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{PAD - 10}" y2="{HEIGHT - PAD}" '
                     f'stroke="{colour}" stroke-opacity="0.25"/>')
    legend_x = PAD
    for dim in DIMENSIONS:
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 12}" width="10" height="3" '
                     f'fill="{COLOURS[dim]}"/><text x="{legend_x + 14}" '
                     f'y="{HEIGHT - 8}">{dim}</text>')
        legend_x += 120
    parts.append("</svg>")
    return "".join(parts)


def _section_of(e: dict[str, Any]) -> tuple[str, str]:
    """Where a signal is shown: its team's section, else the tenant's."""
    if e["actor_scope"] == "team":
        return ("team", e["subject_id"])
    if e["actor_scope"] == "actor" and e.get("team_id"):
        return ("team", e["team_id"])
    return ("tenant", "")


def render_report(result: DemoResult, scores: GroupScores) -> str:
    """The report page for a demo run and its group scores (``_group_scores``)."""
    episodes = episodes_in_order(result)
    by_section: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in episodes:
        scope = e["actor_scope"]
        who = (result.actor_of.get(e["subject_id"], e["subject_id"][:10]) if scope == "actor"
               else scope if scope in ("team", "tenant") else f"{scope} {e['subject_id']}")
        by_section[_section_of(e)].append(
            {**e, "label": f"{e['first_day']} {who}: {e['signal_class']} [{e['severity']}] "
                           f"{e['reason']}"})
    first, last = result.first_day, result.last_day
    teams = sorted({subject for scope, subject in scores if scope == "team"}
                   | {subject for scope, subject in by_section if scope == "team"})
    no_team_scores = ("No team scores: the team is smaller than min_team_size, so its members "
                      "are only aggregated into the tenant.")
    layout = [(("team", t), scores.get(("team", t)), f"Team {t}", no_team_scores)
              for t in teams]
    layout.append((("tenant", ""), scores.get(("tenant", result.tenant_id)),
                   f"The whole tenant {result.tenant_id}: its own signals, its cohorts' and "
                   "those of actors in no team", "No tenant scores."))
    sections = []
    for key, group_scores, title, missing in layout:
        # By day; the same day keeps the total order of ``episodes_in_order`` (sort is stable).
        marks = sorted(by_section.get(key, []), key=lambda m: str(m["first_day"]))
        if key[0] == "tenant" and not marks and not group_scores:
            continue
        chart = (_chart(group_scores, first, last, marks) if group_scores else
                 f"<p><em>{html.escape(missing)}</em></p>")
        items = "".join(f"<li>{html.escape(m['label'])}</li>" for m in marks) or \
            "<li>no signals</li>"
        sections.append(f"<section><h2>{html.escape(title)}</h2>{chart}"
                        f"<ul>{items}</ul></section>")
    step = _step_days(first, last)
    stepped = f" (drawn as the mean of every {step} days)" if step > 1 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UBI demo report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
section{{margin-bottom:2.5em}} li{{margin:.2em 0;font-size:.9em}}</style></head><body>
<h1>UBI demo: score timelines</h1>
<p>Tenant {html.escape(result.tenant_id)}, {first} to {last}: {result.ingest.events:,} events,
{len(episodes)} signals. Lines: the group's 7-day dimension scores{stepped} (50 = the group's
own normal, higher is healthier). Dots: signals of the group or its members on the day first
raised (grey INFO, orange WARN, red CRITICAL); hover for the reason.</p>
{''.join(sections)}
</body></html>"""


def write_report(settings: Settings, result: DemoResult, path: str | Path) -> Path:
    """Write the report for a demo run; returns the path."""
    out = Path(path)
    out.write_text(render_report(result, _group_scores(settings, result.tenant_id)),
                   encoding="utf-8")
    return out
