"""Running the pipeline's services in the test process, as the workers would."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import session_factory
from ubi.services import detection, features, ingest


def run_pipeline(settings: Any, tenant: str, events: list[dict[str, Any]]) -> None:
    """Store ``events`` (a transaction per 1000, as the ingest workers do), then compute the
    tenant's features and detect its signals."""
    alias = Pseudonymiser(settings.pseudonym_secret)
    for i in range(0, len(events), 1000):
        with session_factory()() as s:
            # A batch id per content: a later call's batches are new batches, not repeats.
            batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{events[i]['signal_id']}"))
            ingest.store_batch(s, batch_id=batch_id, tenant_id=tenant,
                               events_json=json.dumps(events[i:i + 1000]),
                               received_at=clock.utcnow(), correlation_id=None,
                               pseudonymiser=alias)
            s.commit()
    with session_factory()() as s:
        features.compute_tenant_features(s, tenant)
        detection.detect_tenant(s, tenant)
        s.commit()
