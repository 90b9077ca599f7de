"""Readers' verdicts on signals (SPEC §6 ``POST /signals/{id}/feedback``).

One verdict per reader and signal, which the reader can change; it keeps the signal's class
and dimension, so the per-tenant false-positive share of a (class, dimension) is one query
(``threshold_tuning`` reads it to propose raised thresholds, SPEC §10). ``new_normal`` on an
actor signal re-anchors the actor's baselines of the signal's trigger features (``anchors``,
SPEC §5.2); changing the verdict away from it releases those anchors.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import Signal, SignalFeedback
from ubi.models.session import dialect_insert
from ubi.services import anchors, threshold_tuning

VERDICTS = ("useful", "false_positive", "new_normal")
NOTE_MAX = 2000


def signal_for(session: Session, signal_id: str, tenant_id: str | None) -> Signal | None:
    """The signal ``signal_id`` of ``tenant_id`` (its key); with None, of any tenant (a
    privileged caller names the signal alone: ``ix_signals_signal_id``)."""
    if tenant_id is not None:
        return session.get(Signal, (tenant_id, signal_id))
    return session.execute(sa.select(Signal).where(
        Signal.signal_id == signal_id)).scalars().first()


def record_feedback(session: Session, signal: Signal, *, reader: str, verdict: str,
                    note: str | None, now: datetime) -> dict[str, Any]:
    """Store (or change) ``reader``'s verdict on ``signal`` and act on it: anchors for a new
    normal, a threshold suggestion when false positives call for one. Returns the verdict as
    stored, with the features anchored now and the config versions suggested now."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
    before = session.execute(sa.select(SignalFeedback.verdict).where(
        SignalFeedback.tenant_id == signal.tenant_id,
        SignalFeedback.signal_id == signal.signal_id,
        SignalFeedback.submitted_by == reader)).scalar_one_or_none()
    table = SignalFeedback.__table__
    stmt = dialect_insert(session, table).values(
        feedback_id=str(uuid.uuid4()), signal_id=signal.signal_id, tenant_id=signal.tenant_id,
        signal_class=signal.signal_class, dimension=signal.dimension, verdict=verdict,
        note=(note or None) and note[:NOTE_MAX], submitted_by=reader, created_at=now,
        updated_at=now)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "signal_id", "submitted_by"],
        set_={"verdict": stmt.excluded.verdict, "note": stmt.excluded.note,
              "updated_at": stmt.excluded.updated_at}))
    row = session.execute(sa.select(SignalFeedback).where(
        SignalFeedback.tenant_id == signal.tenant_id,
        SignalFeedback.signal_id == signal.signal_id,
        SignalFeedback.submitted_by == reader)).scalar_one()
    anchored: list[str] = []
    if verdict == "new_normal" and before != "new_normal":
        anchored = [a.feature_name for a in anchors.anchor_signal(
            session, signal, by=reader, feedback_id=row.feedback_id, now=now)]
    elif before == "new_normal" and verdict != "new_normal":
        anchors.release_feedback(session, row.feedback_id, by=reader, now=now)
    suggested = threshold_tuning.suggest_thresholds(session, signal.tenant_id, now=now)
    return {"feedback_id": row.feedback_id, "signal_id": row.signal_id,
            "verdict": row.verdict, "note": row.note, "created_at": row.created_at,
            "updated_at": row.updated_at, "anchored_features": anchored,
            "suggested_config_versions": [v.version for v in suggested]}


def verdicts_of(session: Session, reader: str, signal_ids: list[str]) -> dict[str, str]:
    """``reader``'s stored verdict on each of ``signal_ids`` that has one (the pages show it
    next to the buttons, so a verdict just given is visible at once)."""
    if not signal_ids:
        return {}
    rows = session.execute(sa.select(SignalFeedback.signal_id, SignalFeedback.verdict).where(
        SignalFeedback.submitted_by == reader, SignalFeedback.signal_id.in_(signal_ids)))
    return {signal_id: verdict for signal_id, verdict in rows}
