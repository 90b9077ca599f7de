"""Scores over time (SPEC §5.4) for the pages: a subject's daily dimension scores over a span
of days, and how much each group's scores moved over the last days (the overview's trend).

Only the team and tenant scopes are asked for by the pages of readers without
``ubi:read:actor``; the caller decides which subjects it may show.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import Score

#: The overview's trend: the score of the last evaluated day against this many days before.
TREND_DAYS = 7


def score_history(session: Session, tenant_id: str, scope: str, subject_id: str, *,
                  window: str, first: date, last: date) -> dict[str, list[tuple[date, float]]]:
    """Per dimension, the subject's scores of ``window`` from ``first`` to ``last`` by day
    (days without a score are left out)."""
    s = Score
    rows = session.execute(sa.select(s.dimension, s.day, s.score).where(
        s.tenant_id == tenant_id, s.actor_scope == scope, s.subject_id == subject_id,
        s.window == window, s.day >= first, s.day <= last, s.score.is_not(None))
        .order_by(s.dimension, s.day))
    out: dict[str, list[tuple[date, float]]] = defaultdict(list)
    for dimension, day, score in rows:
        if score is not None:  # (excluded by the query; the column is nullable)
            out[dimension].append((day, float(score)))
    return dict(out)


def score_trends(session: Session, tenant_id: str, scope: str, subject_ids: Iterable[str], *,
                 window: str, as_of: date, days: int = TREND_DAYS
                 ) -> dict[str, dict[str, float]]:
    """Per subject and dimension, its score on ``as_of`` minus its score ``days`` earlier
    (only where both days have one)."""
    ids = list(subject_ids)
    if not ids:
        return {}
    s = Score
    before = as_of - timedelta(days=days)
    rows = session.execute(sa.select(s.subject_id, s.dimension, s.day, s.score).where(
        s.tenant_id == tenant_id, s.actor_scope == scope, s.subject_id.in_(ids),
        s.window == window, s.day.in_((before, as_of)), s.score.is_not(None)))
    seen: dict[tuple[str, str], dict[date, float]] = defaultdict(dict)
    for subject, dimension, day, score in rows:
        if score is not None:  # (excluded by the query; the column is nullable)
            seen[(subject, dimension)][day] = float(score)
    trends: dict[str, dict[str, float]] = defaultdict(dict)
    for (subject, dimension), by_day in seen.items():
        if before in by_day and as_of in by_day:
            trends[subject][dimension] = round(by_day[as_of] - by_day[before], 1)
    return dict(trends)
