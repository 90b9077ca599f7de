"""Days whose stored features a later step owes a recompute (table ``feature_refresh``).

Every step that writes features reads its inputs at one moment; an event stored after that
moment must still reach the features it changes (SPEC §9, "Arrival order"). The features step
covers the actor features of the pairs ingestion marks dirty. Two cases it does not cover are
marked here, per day:

- ``GROUPS``: the features step computed an actor's features for a closed day (an event that
  arrived late): the team, cohort and tenant features of that day and the days after it are
  detection's, which recomputes them on its next run (``detection.detect_tenant``);
- ``ALL``: ingestion stored an event older than ``late_event_days``, which triggers no
  recompute on arrival (SPEC §3): the full recompute (the nightly baselines task, ``ubi
  recompute``) recomputes every feature from that day on.

A mark's ``token`` changes whenever it is set again, so a step releases only the marks it read:
a day marked again while the step ran stays marked for the next one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import FeatureRefresh, table_of
from ubi.store import bulk

GROUPS = "groups"
ALL = "all"

#: A mark as read: (day, token).
Mark = tuple[date, str]


def mark(session: Session, tenant_id: str, kind: str, days: Iterable[date],
         now: datetime) -> int:
    """Mark ``days`` (in the caller's transaction); returns how many."""
    wanted = sorted(set(days))
    if not wanted:
        return 0
    token = str(uuid.uuid4())
    bulk.upsert_columns(session, table_of(FeatureRefresh),
                        {"day": wanted, "token": [token] * len(wanted)},
                        constants={"tenant_id": tenant_id, "kind": kind, "marked_at": now},
                        key_columns=("tenant_id", "kind", "day"), replace=("token",))
    return len(wanted)


def pending(session: Session, tenant_id: str, kind: str) -> list[Mark]:
    """The tenant's marks of ``kind``, oldest day first."""
    r = FeatureRefresh
    return [(d, t) for d, t in session.execute(
        sa.select(r.day, r.token).where(r.tenant_id == tenant_id, r.kind == kind)
        .order_by(r.day))]


def any_pending(session: Session, tenant_id: str, kind: str) -> bool:
    r = FeatureRefresh
    return session.execute(sa.select(sa.literal(1)).where(
        r.tenant_id == tenant_id, r.kind == kind).limit(1)).first() is not None


def release(session: Session, tenant_id: str, kind: str, taken: Iterable[Mark]) -> int:
    """Delete the marks read as ``taken``, unless they were set again since."""
    r = FeatureRefresh
    done = 0
    for part in bulk.chunks(sorted(taken), 2000):
        result = session.execute(sa.delete(r).where(
            r.tenant_id == tenant_id, r.kind == kind,
            sa.tuple_(r.day, r.token).in_(list(part))),
            execution_options={"synchronize_session": False})
        done += int(getattr(result, "rowcount", 0) or 0)
    return done
