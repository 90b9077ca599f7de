"""Profiles and summaries (SPEC §6): what a subject looks like on its latest evaluated day.

An actor profile, a team summary and a tenant summary share one shape: the subject, the day
they describe (``as_of``: the tenant's last evaluated day), the dimension scores of that day
with their reasons, the features of the requested window with their baselines and how far
from normal they are (z, SPEC §5.3), the subject's active and recent signals by dimension,
and ``stale`` (SPEC §9). Teams below ``min_team_size`` have no summary at all: they read
exactly like an unknown team (SPEC §8, k-anonymity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.anomalies import MIN_BASELINE_CONFIDENCE, zscores
from ubi.analytics.calendar import day_type
from ubi.analytics.taxonomy import DIMENSIONS, WINDOWS
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Baseline, Score, daily_rollups
from ubi.services import freshness
from ubi.services.signal_queries import subject_signals
from ubi.store import features as feature_store

#: Recent signals: those that fired in the last this many days (and every active one).
RECENT_DAYS = 28

# The reads of a profile as statements built once, with bound parameters: building and keying
# a statement per request cost more Python than PostgreSQL spends executing it.
_r = daily_rollups.c
_mine = (_r.tenant_id == sa.bindparam("tenant_id"), _r.actor_id == sa.bindparam("actor_id"))
#: One round trip: an actor's newest day's type and team, with the span of days seen. A
#: rollup's day is its events' UTC day, so the newest day's last event is the actor's last
#: (no max over every day: that scan was most of the statement's time).
_ACTOR_SEEN = (sa.select(_r.actor_type, _r.team_id,
                         sa.select(sa.func.min(_r.day)).where(*_mine).scalar_subquery(), _r.day,
                         _r.last_event_at)
               .where(*_mine).order_by(_r.day.desc()).limit(1))
_TEAM_SIZE = sa.select(sa.func.count(sa.distinct(_r.actor_id))).where(
    _r.tenant_id == sa.bindparam("tenant_id"), _r.team_id == sa.bindparam("team_id"),
    _r.day >= sa.bindparam("start"), _r.day <= sa.bindparam("as_of"))
_SUBJECT = (Score.tenant_id == sa.bindparam("tenant_id"),
            Score.actor_scope == sa.bindparam("scope"),
            Score.subject_id == sa.bindparam("subject_id"), Score.window == sa.bindparam("window"))
_SCORES = sa.select(Score.dimension, Score.score, Score.previous_score, Score.confidence,
                    Score.reason).where(*_SUBJECT, Score.day == sa.bindparam("as_of"))
_BASELINES = sa.select(
    Baseline.feature_name, Baseline.baseline_id, Baseline.mean, Baseline.std_dev, Baseline.p50,
    Baseline.p90, Baseline.n_observations, Baseline.confidence.label("b_confidence")).where(
    Baseline.tenant_id == sa.bindparam("tenant_id"),
    Baseline.actor_scope == sa.bindparam("scope"),
    Baseline.subject_id == sa.bindparam("subject_id"), Baseline.window == sa.bindparam("window"),
    Baseline.day_type == sa.bindparam("day_type"))


class NotFound(LookupError):
    """No such subject for this tenant (or one too small to show: the same answer)."""


@dataclass(frozen=True)
class Subject:
    scope: str
    subject_id: str


def actor_profile(session: Session, tenant_id: str, config: TenantConfig, pseudonym: str, *,
                  actor_id: str, window: str, now: datetime) -> dict[str, Any]:
    """The profile of one actor (the caller may see actors; policy allows actor views)."""
    seen = session.execute(_ACTOR_SEEN, {"tenant_id": tenant_id, "actor_id": pseudonym}
                           ).one_or_none()
    if seen is None:
        raise NotFound(f"no actor {actor_id!r} in tenant {tenant_id!r}")
    actor_type, team_id, first_seen, last_seen = seen[:4]
    newest: datetime | None = seen[4]
    doc = _subject_view(session, tenant_id, config, Subject("actor", pseudonym),
                        freshness.read_state(session, tenant_id), window=window,
                        sees_actors=True, now=now, newest_data=newest)
    doc["actor"] = {"actor_id": actor_id, "pseudonym": pseudonym, "actor_type": actor_type,
                    "team_id": team_id, "first_seen": first_seen, "last_seen": last_seen}
    return doc


def team_summary(session: Session, tenant_id: str, config: TenantConfig, team_id: str, *,
                 window: str, sees_actors: bool, now: datetime) -> dict[str, Any]:
    """The summary of a team of at least ``min_team_size`` actors in the window."""
    state = freshness.read_state(session, tenant_id)
    as_of = state.last_evaluated_day if state is not None else None
    members = team_size(session, tenant_id, team_id, as_of, window) if as_of else 0
    if state is None or as_of is None or members < config.min_team_size:
        raise NotFound(f"no team {team_id!r} in tenant {tenant_id!r}")
    doc = _subject_view(session, tenant_id, config, Subject("team", team_id), state,
                        window=window, sees_actors=sees_actors, now=now,
                        newest_data=state.newest_event_at)
    doc["team"] = {"team_id": team_id, "actors": members}
    return doc


def tenant_summary(session: Session, tenant_id: str, config: TenantConfig, *, window: str,
                   sees_actors: bool, now: datetime) -> dict[str, Any]:
    """The tenant's aggregates, its signals, and its teams of at least ``min_team_size``."""
    state = freshness.read_state(session, tenant_id)
    if state is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    doc = _subject_view(session, tenant_id, config, Subject("tenant", tenant_id), state,
                        window=window, sees_actors=sees_actors, now=now,
                        newest_data=state.newest_event_at)
    as_of = doc["as_of"]
    teams = []
    if as_of is not None:
        for team_id, members in team_sizes(session, tenant_id, as_of, window).items():
            if members >= config.min_team_size:
                teams.append({"team_id": team_id, "actors": members,
                              "scores": _scores(session, tenant_id, Subject("team", team_id),
                                                as_of, window)})
    doc["teams"] = teams
    return doc


def team_sizes(session: Session, tenant_id: str, as_of: date, window: str) -> dict[str, int]:
    """Distinct actors per team with events in the window ending ``as_of``."""
    r = daily_rollups.c
    start = as_of - timedelta(days=WINDOWS[window] - 1)
    rows: Sequence[sa.Row[str, int]] = session.execute(
        sa.select(r.team_id, sa.func.count(sa.distinct(r.actor_id))).where(
            r.tenant_id == tenant_id, r.day >= start, r.day <= as_of, r.team_id.is_not(None))
        .group_by(r.team_id)).all()
    return {str(team): int(n) for team, n in rows}


def team_size(session: Session, tenant_id: str, team_id: str, as_of: date, window: str) -> int:
    start = as_of - timedelta(days=WINDOWS[window] - 1)
    return int(session.execute(_TEAM_SIZE, {"tenant_id": tenant_id, "team_id": team_id,
                                            "start": start, "as_of": as_of}).scalar_one())


def _subject_view(session: Session, tenant_id: str, config: TenantConfig, subject: Subject,
                  state: freshness.TenantState | None, *, window: str, sees_actors: bool,
                  now: datetime, newest_data: datetime | None) -> dict[str, Any]:
    as_of = state.last_evaluated_day if state is not None else None
    doc: dict[str, Any] = {"tenant_id": tenant_id, "window": window, "as_of": as_of,
                           "scores": {}, "features": [], "signals": {}}
    if as_of is not None:
        doc["scores"] = _scores(session, tenant_id, subject, as_of, window)
        doc["features"] = _features(session, tenant_id, config, subject, as_of, window)
        signals = subject_signals(session, tenant_id, config, subject.scope,
                                  subject.subject_id, since=as_of - timedelta(days=RECENT_DAYS),
                                  sees_actors=sees_actors)
        for dim in DIMENSIONS:
            of_dim = [s for s in signals if s["dimension"] == dim]
            if of_dim:
                doc["signals"][dim] = of_dim
    doc["stale"] = freshness.stale(state, config, newest_subject_data=newest_data, now=now)
    return doc


def _scores(session: Session, tenant_id: str, subject: Subject, as_of: date,
            window: str) -> dict[str, Any]:
    rows = session.execute(_SCORES, {"tenant_id": tenant_id, "scope": subject.scope,
                                     "subject_id": subject.subject_id, "window": window,
                                     "as_of": as_of})
    return {dim: {"score": _num(score), "previous_score": _num(previous),
                  "confidence": confidence, "reason": reason}
            for dim, score, previous, confidence, reason in rows}


def _features(session: Session, tenant_id: str, config: TenantConfig, subject: Subject,
              as_of: date, window: str) -> list[dict[str, Any]]:
    """The window's features of ``as_of``, each with the baseline of its day type and z."""
    kind = day_type(as_of, config)
    baselines = {row["feature_name"]: row for row in session.execute(_BASELINES, {
        "tenant_id": tenant_id, "scope": subject.scope, "subject_id": subject.subject_id,
        "window": window, "day_type": kind}).mappings()}
    confidence, values = feature_store.subject_window(
        session, tenant_id, subject.scope, subject.subject_id, as_of, window)
    values.sort(key=lambda v: v[0].name)
    found = [baselines.get(spec.name) for spec, _, _ in values]
    zs = _z([v for _, _, v in values], found, float(config.baseline_algorithm["min_std"]))
    return [{
        "feature_id": fid, "feature_name": spec.name, "dimension": spec.dimension,
        "window": window, "value": value, "unit": spec.unit, "volume_only": spec.volume_only,
        "confidence": confidence,
        "baseline": None if b is None else {
            "baseline_id": b["baseline_id"], "day_type": kind, "mean": _num(b["mean"]),
            "std_dev": _num(b["std_dev"]), "p50": _num(b["p50"]), "p90": _num(b["p90"]),
            "n_observations": b["n_observations"], "confidence": b["b_confidence"],
        },
        "z": z,
    } for (spec, fid, value), b, z in zip(values, found, zs, strict=True)]


def _z(values: Sequence[float | None], baselines: Sequence[Any], min_std: float
       ) -> list[float | None]:
    """SPEC §5.3's z of each value against its baseline (the detector's own rule for std 0);
    none without a value or a baseline, or while the baseline's confidence is too low to say
    anything (a warm-up baseline)."""
    def num(v: float | None) -> float:
        return math.nan if v is None else v

    usable = [b is not None and b["b_confidence"] >= MIN_BASELINE_CONFIDENCE for b in baselines]
    z = zscores(np.array([num(v) for v in values], dtype=float),
                np.array([num(b["mean"] if b else None) for b in baselines], dtype=float),
                np.array([num(b["std_dev"] if b else None) for b in baselines], dtype=float),
                min_std)
    return [round(float(v), 3) if ok and not math.isnan(v) else None
            for v, ok in zip(z, usable, strict=True)]


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
