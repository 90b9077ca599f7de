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
from ubi.analytics.taxonomy import DIMENSIONS, FEATURE_INDEX, FEATURES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Baseline, Feature, IngestionState, Score, daily_rollups
from ubi.services import freshness
from ubi.services.signal_queries import subject_signals

#: Recent signals: those that fired in the last this many days (and every active one).
RECENT_DAYS = 28


class NotFound(LookupError):
    """No such subject for this tenant (or one too small to show: the same answer)."""


@dataclass(frozen=True)
class Subject:
    scope: str
    subject_id: str


def actor_profile(session: Session, tenant_id: str, config: TenantConfig, pseudonym: str, *,
                  actor_id: str, window: str, now: datetime) -> dict[str, Any]:
    """The profile of one actor (the caller may see actors; policy allows actor views)."""
    r = daily_rollups.c
    # (daily_rollups is a Core table: its columns are untyped for mypy)
    seen: sa.Row[date | None, date | None, datetime | None] = session.execute(sa.select(
        sa.func.min(r.day), sa.func.max(r.day), sa.func.max(r.last_event_at)).where(
        r.tenant_id == tenant_id, r.actor_id == pseudonym)).one()
    first_seen, last_seen, newest = seen
    if first_seen is None:
        raise NotFound(f"no actor {actor_id!r} in tenant {tenant_id!r}")
    actor_type, team_id = session.execute(sa.select(r.actor_type, r.team_id).where(
        r.tenant_id == tenant_id, r.actor_id == pseudonym, r.day == last_seen)).one()
    doc = _subject_view(session, tenant_id, config, Subject("actor", pseudonym), window=window,
                        sees_actors=True, now=now, newest_data=newest)
    doc["actor"] = {"actor_id": actor_id, "pseudonym": pseudonym, "actor_type": actor_type,
                    "team_id": team_id, "first_seen": first_seen, "last_seen": last_seen}
    return doc


def team_summary(session: Session, tenant_id: str, config: TenantConfig, team_id: str, *,
                 window: str, sees_actors: bool, now: datetime) -> dict[str, Any]:
    """The summary of a team of at least ``min_team_size`` actors in the window."""
    as_of = _as_of(session, tenant_id)
    members = team_size(session, tenant_id, team_id, as_of, window) if as_of else 0
    if as_of is None or members < config.min_team_size:
        raise NotFound(f"no team {team_id!r} in tenant {tenant_id!r}")
    doc = _subject_view(session, tenant_id, config, Subject("team", team_id), window=window,
                        sees_actors=sees_actors, now=now, newest_data=_newest(session,
                                                                             tenant_id))
    doc["team"] = {"team_id": team_id, "actors": members}
    return doc


def tenant_summary(session: Session, tenant_id: str, config: TenantConfig, *, window: str,
                   sees_actors: bool, now: datetime) -> dict[str, Any]:
    """The tenant's aggregates, its signals, and its teams of at least ``min_team_size``."""
    if session.get(IngestionState, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    doc = _subject_view(session, tenant_id, config, Subject("tenant", tenant_id),
                        window=window, sees_actors=sees_actors, now=now,
                        newest_data=_newest(session, tenant_id))
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
    r = daily_rollups.c
    start = as_of - timedelta(days=WINDOWS[window] - 1)
    return int(session.execute(sa.select(sa.func.count(sa.distinct(r.actor_id))).where(
        r.tenant_id == tenant_id, r.team_id == team_id, r.day >= start,
        r.day <= as_of)).scalar_one())


def _as_of(session: Session, tenant_id: str) -> date | None:
    state = session.get(IngestionState, tenant_id)
    return state.last_evaluated_day if state is not None else None


def _newest(session: Session, tenant_id: str) -> datetime | None:
    state = session.get(IngestionState, tenant_id)
    return state.newest_event_at if state is not None else None


def _subject_view(session: Session, tenant_id: str, config: TenantConfig, subject: Subject, *,
                  window: str, sees_actors: bool, now: datetime,
                  newest_data: datetime | None) -> dict[str, Any]:
    as_of = _as_of(session, tenant_id)
    doc: dict[str, Any] = {"tenant_id": tenant_id, "window": window, "as_of": as_of,
                           "scores": {}, "features": [], "signals": {}}
    if as_of is not None:
        doc["scores"] = _scores(session, tenant_id, subject, as_of, window)
        doc["features"] = _features(session, tenant_id, config, subject, as_of, window)
        signals = subject_signals(session, tenant_id, config, subject.scope,
                                  [subject.subject_id], since=as_of - timedelta(days=RECENT_DAYS),
                                  sees_actors=sees_actors)
        for dim in DIMENSIONS:
            of_dim = [s for s in signals if s["dimension"] == dim]
            if of_dim:
                doc["signals"][dim] = of_dim
    doc["stale"] = freshness.is_stale(session, tenant_id, newest_subject_data=newest_data,
                                      now=now)
    return doc


def _scores(session: Session, tenant_id: str, subject: Subject, as_of: date,
            window: str) -> dict[str, Any]:
    s = Score
    rows = session.execute(sa.select(s).where(
        s.tenant_id == tenant_id, s.actor_scope == subject.scope,
        s.subject_id == subject.subject_id, s.window == window, s.day == as_of)).scalars()
    return {row.dimension: {"score": _num(row.score), "previous_score": _num(row.previous_score),
                            "confidence": row.confidence, "reason": row.reason}
            for row in rows}


def _features(session: Session, tenant_id: str, config: TenantConfig, subject: Subject,
              as_of: date, window: str) -> list[dict[str, Any]]:
    """The window's features of ``as_of``, each with the baseline of its day type and z."""
    f, b = Feature, Baseline
    kind = day_type(as_of, config)
    baselines = {row.feature_name: row for row in session.execute(sa.select(b).where(
        b.tenant_id == tenant_id, b.actor_scope == subject.scope,
        b.subject_id == subject.subject_id, b.window == window, b.day_type == kind)).scalars()}
    out = []
    for row in session.execute(sa.select(f).where(
            f.tenant_id == tenant_id, f.actor_scope == subject.scope,
            f.subject_id == subject.subject_id, f.window == window, f.day == as_of)
            .order_by(f.feature_name)).scalars():
        spec = FEATURES[FEATURE_INDEX[row.feature_name]]
        base = baselines.get(row.feature_name)
        out.append({
            "feature_id": row.feature_id, "feature_name": row.feature_name,
            "dimension": row.dimension, "window": window, "value": _num(row.value),
            "unit": spec.unit, "volume_only": spec.volume_only, "confidence": row.confidence,
            "baseline": None if base is None else {
                "baseline_id": base.baseline_id, "day_type": kind, "mean": _num(base.mean),
                "std_dev": _num(base.std_dev), "p50": _num(base.p50), "p90": _num(base.p90),
                "n_observations": base.n_observations, "confidence": base.confidence},
            "z": _z(row.value, base, config),
        })
    return out


def _z(value: float | None, base: Baseline | None, config: TenantConfig) -> float | None:
    """SPEC §5.3's z of the value against the baseline (the detector's own rule for std 0);
    none while the baseline's confidence is too low to say anything."""
    if value is None or base is None or base.mean is None or base.std_dev is None:
        return None
    if base.confidence < MIN_BASELINE_CONFIDENCE:  # a warm-up baseline says nothing yet
        return None
    z = zscores(np.array([value]), np.array([base.mean]), np.array([base.std_dev]),
                float(config.baseline_algorithm["min_std"]))[0]
    return None if math.isnan(z) else round(float(z), 3)


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
