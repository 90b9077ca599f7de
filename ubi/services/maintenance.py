"""Periodic upkeep (``maintenance`` queue): anomaly resolution by time, queue gauges."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.models import Anomaly
from ubi.services import configs


def resolve_anomalies(session: Session, tenant_id: str, *, now: datetime | None = None) -> int:
    """Resolve active anomalies whose value has stayed within 1 std of the mean for the tenant's
    ``resolution_hours`` (SPEC §5.3); detection records when the value came back in band."""
    now = now or clock.utcnow()
    hours = configs.load_config(session, tenant_id).resolution_hours
    # an UPDATE's result is a CursorResult (Session.execute is typed as returning Result)
    result = cast("sa.CursorResult[Any]", session.execute(sa.update(Anomaly).where(
        Anomaly.tenant_id == tenant_id, Anomaly.status == "active",
        Anomaly.within_band_since.is_not(None),
        Anomaly.within_band_since <= now - timedelta(hours=hours)).values(
        status="resolved", resolved_at=now, updated_at=now)))
    return int(result.rowcount or 0)
