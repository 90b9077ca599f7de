"""Re-anchored baselines: a reader's "new normal" (SPEC §5.2, §6 feedback).

``new_normal`` feedback on an actor signal anchors that actor's baselines of the signal's
trigger features (every window) at the signal's day: from then on they learn only from the
days after it, so the changed behaviour becomes the actor's normal after a fresh warm-up
instead of firing for weeks. Anchors are rows: a later anchor of the same series supersedes
the earlier one, changing the verdict or an admin undoes it, and each change is in the audit
log. Detection and the nightly baseline recompute read the active ones (``active``).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.baselines import Anchors
from ubi.analytics.calendar import day_number
from ubi.analytics.taxonomy import FEATURE_INDEX
from ubi.models import BaselineAnchor, Signal
from ubi.services import audit

#: Anchor ids are UUIDs: anything else names no anchor (and never reaches the database).
_ANCHOR_ID = re.compile(r"^[0-9a-f-]{36}$")
#: Why an anchor stopped applying.
SUPERSEDED, VERDICT_CHANGED, UNDONE = "superseded", "verdict_changed", "undone_by_admin"


def trigger_features(signal: Signal) -> list[str]:
    """The features a signal fired on (its triggers are ``feature.window``), in order."""
    names: list[str] = []
    for trigger in signal.triggers or []:
        name = str(trigger).split(".", 1)[0]
        if name in FEATURE_INDEX and name not in names:
            names.append(name)
    return names


def anchor_signal(session: Session, signal: Signal, *, by: str, feedback_id: str | None,
                  now: datetime) -> list[BaselineAnchor]:
    """Anchor the baselines of ``signal``'s subject for its trigger features at its day (actor
    signals only: a team's normal is not one reader's call). Earlier active anchors of the
    same series are superseded. Returns the new anchors (none for other scopes)."""
    if signal.actor_scope != "actor":
        return []
    features = trigger_features(signal)
    if not features:
        return []
    a = BaselineAnchor
    earlier = session.execute(sa.select(a).where(
        a.tenant_id == signal.tenant_id, a.actor_scope == signal.actor_scope,
        a.subject_id == signal.subject_id, a.feature_name.in_(features),
        a.undone_at.is_(None))).scalars().all()
    for row in earlier:
        row.undone_at, row.undone_by, row.undo_reason = now, by, SUPERSEDED
    made = [BaselineAnchor(
        anchor_id=str(uuid.uuid4()), tenant_id=signal.tenant_id,
        actor_scope=signal.actor_scope, subject_id=signal.subject_id, feature_name=name,
        anchor_day=signal.day, signal_id=signal.signal_id, feedback_id=feedback_id,
        created_by=by, created_at=now) for name in features]
    session.add_all(made)
    audit.record(session, tenant_id=signal.tenant_id, action="baseline.anchored", principal=by,
                 details={"signal_id": signal.signal_id, "anchor_day": str(signal.day),
                          "features": features, "anchor_ids": [m.anchor_id for m in made],
                          "superseded": [r.anchor_id for r in earlier]},
                 now=now)
    return made


def release_feedback(session: Session, feedback_id: str, *, by: str, now: datetime) -> int:
    """Undo the active anchors a verdict made, when its reader changes it; returns how many."""
    rows = session.execute(sa.select(BaselineAnchor).where(
        BaselineAnchor.feedback_id == feedback_id,
        BaselineAnchor.undone_at.is_(None))).scalars().all()
    for row in rows:
        row.undone_at, row.undone_by, row.undo_reason = now, by, VERDICT_CHANGED
    if rows:
        audit.record(session, tenant_id=rows[0].tenant_id, action="baseline.anchor_released",
                     principal=by, details={"anchor_ids": [r.anchor_id for r in rows],
                                            "feedback_id": feedback_id}, now=now)
    return len(rows)


def undo(session: Session, tenant_id: str, anchor_id: str, *, by: str,
         now: datetime) -> BaselineAnchor | None:
    """An admin undoes an anchor: the series' baseline reads its whole history again. None
    when the tenant has no such anchor; an anchor already undone stays as it was."""
    row = (session.get(BaselineAnchor, (tenant_id, anchor_id)) if _ANCHOR_ID.match(anchor_id)
           else None)
    if row is None:
        return None
    if row.undone_at is None:
        row.undone_at, row.undone_by, row.undo_reason = now, by, UNDONE
        audit.record(session, tenant_id=tenant_id, action="baseline.anchor_undone",
                     principal=by, details={"anchor_id": anchor_id,
                                            "feature": row.feature_name,
                                            "anchor_day": str(row.anchor_day)}, now=now)
    return row


def active(session: Session, tenant_id: str) -> Anchors:
    """The tenant's anchors in force, as the analytics engine takes them."""
    a = BaselineAnchor
    rows = session.execute(sa.select(a.actor_scope, a.subject_id, a.feature_name,
                                     a.anchor_day).where(
        a.tenant_id == tenant_id, a.undone_at.is_(None))).all()
    return {(scope, subject, name): day_number(day) for scope, subject, name, day in rows}


def listing(session: Session, tenant_id: str, *, include_undone: bool = False
            ) -> list[dict[str, Any]]:
    """The tenant's anchors, newest first (the undone ones too when asked)."""
    a = BaselineAnchor
    query = sa.select(a).where(a.tenant_id == tenant_id)
    if not include_undone:
        query = query.where(a.undone_at.is_(None))
    return [describe(r) for r in session.execute(
        query.order_by(a.created_at.desc(), a.anchor_id)).scalars()]


def describe(row: BaselineAnchor) -> dict[str, Any]:
    return {"anchor_id": row.anchor_id, "actor_scope": row.actor_scope,
            "subject_id": row.subject_id, "feature_name": row.feature_name,
            "anchor_day": row.anchor_day, "signal_id": row.signal_id,
            "created_by": row.created_by, "created_at": row.created_at,
            "undone_at": row.undone_at, "undone_by": row.undone_by,
            "undo_reason": row.undo_reason}
