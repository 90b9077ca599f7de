"""Stored features as tests read them: SPEC §5.1 records through the one reader
(``ubi.store.features.records``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.calendar import day_number
from ubi.analytics.ids import feature_id
from ubi.analytics.taxonomy import FEATURES, WINDOWS
from ubi.models import FeatureDay
from ubi.models.base import JSONType, UTCDateTime
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


#: (scope, subject, feature name, window, day)
FeatureKey = tuple[str, str, str, str, date]


def by_key(session: Session, tenant_id: str
           ) -> dict[FeatureKey, tuple[float | None, float, bool | None]]:
    """Every stored feature of the tenant: key -> (value, confidence, partial). What a run
    computed, without when it ran (``computed_at``)."""
    return {(r.actor_scope, r.subject_id, r.feature_name, r.window, r.day):
            (r.value, r.confidence, r.partial) for r in stored(session, tenant_id)}


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


def old_feature_rows() -> list[dict[str, object]]:
    """Rows of the table ``features`` (before migration 0015): two tenants, every scope, a window
    without rows on one day, null values, a partial day and rows without ``partial``."""
    rows: list[dict[str, object]] = []
    computed = datetime(2026, 11, 21, 3, 4, 5, 678000, tzinfo=UTC)
    cells = [("acme", "actor", "a1", date(2026, 11, 19), ("24h", "7d", "28d"), False),
             ("acme", "actor", "a1", date(2026, 11, 20), ("7d", "28d"), True),
             ("acme", "team", "t1", date(2026, 11, 20), ("24h", "7d", "28d"), None),
             ("globex", "tenant", "globex", date(2026, 11, 18), ("28d",), None)]
    for n, (tenant, scope, subject, day, windows, partial) in enumerate(cells):
        for w, window in enumerate(windows):
            for i, spec in enumerate(FEATURES):
                if window not in spec.windows:
                    continue
                meta: dict[str, object] = {"volume_only": spec.volume_only, "unit": spec.unit}
                if partial is not None:
                    meta["partial"] = partial
                start = day - timedelta(days=WINDOWS[window] - 1)
                rows.append({
                    "feature_id": feature_id(tenant, scope, subject, spec.name, window,
                                             day_number(day)),
                    "tenant_id": tenant, "actor_scope": scope, "subject_id": subject,
                    "feature_name": spec.name, "dimension": spec.dimension, "window": window,
                    "day": day, "window_start": datetime.combine(start, datetime.min.time(),
                                                                 tzinfo=UTC),
                    "window_end": datetime.combine(day + timedelta(days=1),
                                                   datetime.min.time(), tzinfo=UTC),
                    "value": None if i % 5 == 3 else (n + 1) * 0.1 + i / 3 + w,
                    "confidence": 0.25 * (w + 1) + n / 7, "metadata": meta,
                    "correlation_id": None, "computed_at": computed})
    return rows


def features_table() -> sa.Table:
    """The table ``features`` before migration 0015 (the model is gone)."""
    return sa.Table(
        "features", sa.MetaData(), *(sa.Column(c, sa.String) for c in (
            "feature_id", "tenant_id", "actor_scope", "subject_id", "feature_name",
            "dimension", "window", "correlation_id")),
        sa.Column("day", sa.Date), sa.Column("value", sa.Float),
        sa.Column("confidence", sa.Float), sa.Column("metadata", JSONType),
        *(sa.Column(c, UTCDateTime) for c in ("window_start", "window_end", "computed_at")))
