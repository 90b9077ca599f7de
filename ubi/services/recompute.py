"""``ubi recompute``: a tenant's days replayed from its stored data (onboarding and repair).

One run recomputes, in one transaction and in the order each step reads the previous one's
output: every feature of every scope over the range (from the rollups, rows that must not
exist removed), the scores of the range's evaluated days (``detection.restate_days``), the
range's closed days not evaluated yet (``detection.detect_tenant`` from the range's first
day: anomalies, scores and signals), and then the baselines as of yesterday (what the API
serves, whatever the range). Anomalies and signals of evaluated days are final (SPEC §5.3):
they are not raised again. Every write is an upsert by deterministic id, so a run that dies
(a worker killed, a restart) is simply run again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.models import IngestionState, daily_rollups
from ubi.services import baselines, detection, features, freshness
from ubi.services.tenant_locks import tenant_lock


@dataclass
class RangeOutcome:
    tenant_id: str
    first_day: date | None = None
    last_day: date | None = None
    features: int = 0
    features_deleted: int = 0
    scores: int = 0
    evaluated_from: date | None = None
    evaluated_through: date | None = None
    signal_versions: int = 0
    baselines: int = 0
    #: Another run (features, detect, a recompute) holds the tenant: nothing done.
    busy: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in asdict(self).items()}


def stored_days(session: Session, tenant_id: str) -> tuple[date | None, date | None]:
    """First and last day the tenant has rollups for."""
    r = daily_rollups.c
    row: sa.Row[date | None, date | None] = session.execute(sa.select(
        sa.func.min(r.day), sa.func.max(r.day)).where(r.tenant_id == tenant_id)).one()
    return row[0], row[1]


def recompute_range(session: Session, tenant_id: str, *, first_day: date | None = None,
                    last_day: date | None = None, now: datetime | None = None) -> RangeOutcome:
    """Recompute the tenant's features, scores, detection and baselines over
    [``first_day``, ``last_day``] (default: every stored day through today)."""
    now = now or clock.utcnow()
    outcome = RangeOutcome(tenant_id)
    # Both locks for the whole run: no features or detect run interleaves (they re-enter).
    if not (tenant_lock(session, "features", tenant_id)
            and tenant_lock(session, "detect", tenant_id)):
        outcome.busy = True
        return outcome
    stored_first, stored_last = stored_days(session, tenant_id)
    if stored_first is None or stored_last is None:
        return outcome
    first = first_day or stored_first
    last = last_day or max(stored_last, now.date())
    if last < first:
        return outcome
    outcome.first_day, outcome.last_day = first, last
    feats = features.recompute_features(session, tenant_id, now=now, first_day=first,
                                        last_day=last)
    outcome.features, outcome.features_deleted = feats.rows, feats.deleted
    state = session.get(IngestionState, tenant_id)
    if state is not None and state.last_evaluated_day is not None \
            and first <= state.last_evaluated_day:
        outcome.scores += detection.restate_days(session, tenant_id, first, now=now,
                                                 through=last).scores
    closed = freshness.closed_through(session, state, now)
    if closed is not None and first <= min(last, closed):
        found = detection.detect_tenant(session, tenant_id, now=now, evaluate_from=first,
                                        through=min(last, closed))
        outcome.evaluated_from, outcome.evaluated_through = (found.evaluated_from,
                                                             found.evaluated_through)
        outcome.scores += found.scores
        outcome.signal_versions = found.signal_versions
    outcome.baselines = baselines.recompute_baselines(session, tenant_id, now=now).baselines
    return outcome
