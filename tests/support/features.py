"""Stored features as tests read them: SPEC §5.1 records through the one reader
(``ubi.store.features.records``)."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import FeatureDay
from ubi.store import features as feature_store
from ubi.store.features import FeatureRecord


def stored(session: Session, tenant_id: str | None = None, **filters: Any
           ) -> list[FeatureRecord]:
    """Every stored record (of one tenant, or of all), fresh from the database; the read
    transaction ends unless the session is ``keep_open`` (it would block a TRUNCATE)."""
    session.expire_all()
    tenants = [tenant_id] if tenant_id is not None else session.execute(
        sa.select(FeatureDay.tenant_id).distinct().order_by(FeatureDay.tenant_id)).scalars()
    found = [r for t in list(tenants) for r in feature_store.records(session, t, **filters)]
    if not session.info.get("keep_open"):
        session.rollback()
    return found


def values(session: Session, tenant_id: str | None = None) -> list[tuple[str, float | None]]:
    """Sorted (feature id, value) of every stored record."""
    return sorted((r.feature_id, r.value) for r in stored(session, tenant_id))


def record(session: Session, name: str, window: str, day: date, *, scope: str = "actor",
           tenant_id: str | None = None) -> FeatureRecord:
    """The one stored record of a feature, window, day and scope."""
    found = [r for r in stored(session, tenant_id, scopes=[scope], first=day, last=day,
                               windows=[window]) if r.feature_name == name]
    assert len(found) == 1, found
    return found[0]


def count(session: Session, tenant_id: str | None = None) -> int:
    """The number of stored feature values."""
    return len(stored(session, tenant_id))
