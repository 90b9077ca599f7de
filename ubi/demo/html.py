"""The demo's HTML report: per-team score timelines with the signals raised on them.

One self-contained page (inline SVG, no scripts, no network): for every team that has team
scores (at least ``min_team_size`` actors), the four dimension scores of the 7-day window
day by day (50 is the team's own normal, higher is healthier), and a marker for every signal
of the team or one of its members on the day it was first raised, listed below the chart.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from ubi.analytics.taxonomy import DIMENSIONS
from ubi.demo.runner import DemoResult
from ubi.settings import Settings

WIDTH, HEIGHT, PAD = 860, 240, 40
COLOURS = {"activity": "#1f77b4", "flow": "#d62728", "collaboration": "#2ca02c",
           "agent_usage": "#9467bd"}
SEVERITY_COLOURS = {"INFO": "#7f7f7f", "WARN": "#ff7f0e", "CRITICAL": "#d62728"}


def _team_scores(settings: Settings, tenant_id: str) -> dict[str, dict[str, dict[date, float]]]:
    from ubi.models import Score, session_scope

    out: dict[str, dict[str, dict[date, float]]] = defaultdict(lambda: defaultdict(dict))
    with session_scope(settings) as s:
        for team, dim, day, score in s.execute(sa.select(
                Score.subject_id, Score.dimension, Score.day, Score.score).where(
                Score.tenant_id == tenant_id, Score.actor_scope == "team",
                Score.window == "7d", Score.score.is_not(None))):
            out[team][dim][day] = float(cast(float, score))  # score IS NOT NULL above
    return out


def _chart(scores: dict[str, dict[date, float]], first: date, last: date,
           marks: list[dict[str, Any]]) -> str:
    span = max(1, (last - first).days)

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
    day = first
    while day <= last:
        if day.weekday() == 0:
            parts.append(f'<text x="{x(day):.1f}" y="{HEIGHT - PAD + 16}" '
                         f'text-anchor="middle">{day:%d %b}</text>')
        day += timedelta(days=1)
    for dim in DIMENSIONS:
        series = sorted(scores.get(dim, {}).items())
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


def write_report(settings: Settings, result: DemoResult, path: str | Path) -> Path:
    """Write the report for a demo run; returns the path."""
    scores = _team_scores(settings, result.tenant_id)
    best: dict[str, dict[str, Any]] = {}
    rank = {"INFO": 0, "WARN": 1, "CRITICAL": 2}
    for r in result.signals:
        cur = best.get(r["signal_id"])
        if cur is None or rank[r["severity"]] > rank[cur["severity"]]:
            best[r["signal_id"]] = r
    by_team: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in best.values():
        team = r["subject_id"] if r["actor_scope"] == "team" else r.get("team_id")
        if not team:
            continue
        who = ("team" if r["actor_scope"] == "team"
               else result.actor_of.get(r["subject_id"], r["subject_id"][:10]))
        by_team[team].append({**r, "label": f"{r['first_day']} {who}: {r['signal_class']} "
                                            f"[{r['severity']}] {r['reason']}"})
    first, last = result.first_day, result.last_day
    sections = []
    for team in sorted(set(scores) | set(by_team)):
        marks = sorted(by_team.get(team, []), key=lambda m: m["first_day"])
        chart = (_chart(scores[team], first, last, marks) if team in scores else
                 "<p><em>No team scores: the team is smaller than min_team_size, so its "
                 "members are only aggregated into the tenant.</em></p>")
        items = "".join(f"<li>{html.escape(m['label'])}</li>" for m in marks) or \
            "<li>no signals</li>"
        sections.append(f"<section><h2>Team {html.escape(team)}</h2>{chart}"
                        f"<ul>{items}</ul></section>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UBI demo report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
section{{margin-bottom:2.5em}} li{{margin:.2em 0;font-size:.9em}}</style></head><body>
<h1>UBI demo: team score timelines</h1>
<p>Tenant {html.escape(result.tenant_id)}, {first} to {last}: {result.ingest.events:,} events,
{len(best)} signals. Lines: the team's 7-day dimension scores (50 = the team's own normal,
higher is healthier). Dots: signals of the team or its members on the day first raised
(grey INFO, orange WARN, red CRITICAL); hover for the reason.</p>
{''.join(sections)}
</body></html>"""
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
