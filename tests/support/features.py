"""Reading a tenant's stored features in tests, whatever the storage's shape.

``stored_features`` is the one place tests outside the feature store's own read its table:
when the storage changes (one row per feature today), only this function changes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import Feature

#: (scope, subject, feature name, window, day)
FeatureKey = tuple[str, str, str, str, date]


def stored_features(session: Session, tenant_id: str
                    ) -> dict[FeatureKey, tuple[float | None, float, dict[str, Any]]]:
    """Every stored feature of the tenant: key -> (value, confidence, metadata). What a run
    computed, without when it ran (``computed_at``) or which batch prompted it."""
    rows = session.execute(sa.select(
        Feature.actor_scope, Feature.subject_id, Feature.feature_name, Feature.window,
        Feature.day, Feature.value, Feature.confidence, Feature.metadata_).where(
        Feature.tenant_id == tenant_id))
    return {(r.actor_scope, r.subject_id, r.feature_name, r.window, r.day):
            (r.value, r.confidence, r.metadata_ or {}) for r in rows}
