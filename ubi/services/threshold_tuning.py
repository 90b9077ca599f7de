"""Threshold suggestions from readers' feedback (SPEC §10).

When readers call more than ``FP_SHARE`` of a signal class's signals in one dimension false
positives over ``WINDOW``, UBI proposes raising that dimension's anomaly thresholds by
``STEP``: a config version of kind ``suggestion`` (status ``open``) holding the whole proposed
config, visible in ``GET /config/{tenant_id}/versions``. It is never applied by itself: an
admin accepts it by PUTting that config, which marks it ``accepted``. Feedback given before the
dimension's thresholds last changed no longer counts, so an accepted raise is judged on the
signals that came after it.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.taxonomy import DIMENSIONS
from ubi.analytics.tenant_config import config_diff, config_hash, validate_config
from ubi.models import SignalFeedback, TenantConfigVersion
from ubi.services import configs

#: False-positive share of a (class, dimension) above which a raise is proposed.
FP_SHARE = 0.05
#: The feedback read: that of the last 28 days.
WINDOW = timedelta(days=28)
#: Fewer verdicts than this say nothing about a share (one "false positive" of one is not 100 %).
MIN_VERDICTS = 3
#: How much a suggestion raises a dimension's warn and critical |z| thresholds.
STEP = 0.5
AUTHOR = "ubi:feedback"
OPEN, ACCEPTED = "open", "accepted"


def suggest_thresholds(session: Session, tenant_id: str, *, now: datetime
                       ) -> list[TenantConfigVersion]:
    """Propose raised thresholds for each dimension whose feedback calls for it; returns the
    suggestions stored now (none when an open one already proposes the same)."""
    current = configs.load_config(session, tenant_id, cached=False)
    fb = SignalFeedback
    dimensions = session.execute(sa.select(fb.dimension).distinct().where(
        fb.tenant_id == tenant_id, fb.updated_at >= now - WINDOW,
        fb.verdict == "false_positive").order_by(fb.dimension)).scalars().all()
    if not dimensions:
        return []
    changed = _thresholds_changed_at(session, tenant_id)
    made: list[TenantConfigVersion] = []
    for dimension in dimensions:
        if dimension not in DIMENSIONS:  # (every signal class's dimension is one today)
            continue
        since = max(now - WINDOW, changed.get(dimension, now - WINDOW))
        counts = _counts_since(session, tenant_id, dimension, since)
        flagged = [(cls, fp, total) for cls, total, fp in counts
                   if total >= MIN_VERDICTS and fp / total > FP_SHARE]
        if not flagged:
            continue
        warn, critical = current.thresholds(dimension)
        proposal = copy.deepcopy(current.raw)
        proposal["anomaly_thresholds"][dimension] = {"warn": round(warn + STEP, 2),
                                                     "critical": round(critical + STEP, 2)}
        proposal = validate_config(proposal)
        if _already_open(session, tenant_id, dimension, proposal):
            continue
        why = ", ".join(f"{cls}: {fp} of {total} false positives" for cls, fp, total in flagged)
        row = TenantConfigVersion(
            tenant_id=tenant_id, version=configs.next_version(session, tenant_id),
            kind="suggestion", status=OPEN, config=proposal,
            diff=config_diff(current.raw, proposal), author=AUTHOR, created_at=now,
            snapshot_hash=config_hash(proposal),
            reason=f"raise {dimension} thresholds by {STEP}: {why} since {since.date()} "
                   f"(more than {FP_SHARE:.0%}); accept by PUTting this config")
        session.add(row)
        session.flush()
        made.append(row)
    return made


def settle(session: Session, tenant_id: str, applied: dict[str, object]) -> int:
    """Mark the open suggestions a newly applied config carries out as accepted; returns how
    many."""
    rows = session.execute(sa.select(TenantConfigVersion).where(
        TenantConfigVersion.tenant_id == tenant_id, TenantConfigVersion.kind == "suggestion",
        TenantConfigVersion.status == OPEN)).scalars().all()
    thresholds = applied.get("anomaly_thresholds", {})
    settled = 0
    for row in rows:
        dims = {c["path"].split(".")[1] for c in row.diff
                if c["path"].startswith("anomaly_thresholds.")}
        proposed = row.config["anomaly_thresholds"]
        if dims and isinstance(thresholds, dict) and all(
                thresholds.get(d) == proposed.get(d) for d in dims):
            row.status = ACCEPTED
            settled += 1
    return settled


def _counts_since(session: Session, tenant_id: str, dimension: str, since: datetime
                  ) -> list[tuple[str, int, int]]:
    fb = SignalFeedback
    rows = session.execute(sa.select(
        fb.signal_class, sa.func.count(),
        sa.func.count().filter(fb.verdict == "false_positive")).where(
        fb.tenant_id == tenant_id, fb.dimension == dimension, fb.updated_at >= since)
        .group_by(fb.signal_class).order_by(fb.signal_class)).all()
    return [(str(cls), int(total), int(fp)) for cls, total, fp in rows]


def _thresholds_changed_at(session: Session, tenant_id: str) -> dict[str, datetime]:
    """When each dimension's thresholds last changed by an applied version (a change of the
    default changes them all)."""
    out: dict[str, datetime] = {}
    versions = session.execute(sa.select(TenantConfigVersion).where(
        TenantConfigVersion.tenant_id == tenant_id, TenantConfigVersion.kind == "applied")
        .order_by(TenantConfigVersion.version)).scalars()
    default_at: datetime | None = None
    for version in versions:
        for change in version.diff or []:
            parts = str(change.get("path", "")).split(".")
            if parts[0] == "anomaly_thresholds" and len(parts) > 1:
                if parts[1] == "default":
                    default_at = version.created_at
                else:
                    out[parts[1]] = version.created_at
    if default_at is not None:
        for dim in DIMENSIONS:
            out[dim] = max(out.get(dim, default_at), default_at)
    return out


def _already_open(session: Session, tenant_id: str, dimension: str,
                  proposal: dict[str, object]) -> bool:
    proposals = session.execute(sa.select(TenantConfigVersion).where(
        TenantConfigVersion.tenant_id == tenant_id, TenantConfigVersion.kind == "suggestion",
        TenantConfigVersion.status == OPEN)).scalars()
    wanted = proposal["anomaly_thresholds"][dimension]  # type: ignore[index]
    return any(row.config["anomaly_thresholds"].get(dimension) == wanted for row in proposals)
