"""Tasks of the ``ingest`` queue."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from ubi.analytics.privacy import Pseudonymiser
from ubi.celery_app import BATCH_COMPRESSION, BATCH_SERIALIZER, app
from ubi.models import session_scope
from ubi.services import batches, ingest
from ubi.settings import get_settings
from ubi.tasks import names
from ubi.tasks.base import PermanentTaskError, UbiTask


@lru_cache(maxsize=1)
def _pseudonymiser(secret: bytes) -> Pseudonymiser:
    return Pseudonymiser(secret)


class BatchTask(UbiTask):
    """A task that stores one accepted batch: its batch says ``failed``, with the reason, as
    soon as its message is dead-lettered (``ubi dlq retry`` takes it up again)."""

    abstract = True

    def dead_lettered(self, reason: str, kwargs: dict[str, Any]) -> None:
        batch_id, tenant_id = kwargs.get("batch_id"), kwargs.get("tenant_id")
        if batch_id and tenant_id:
            with session_scope() as session:
                batches.mark_batch_failed(session, str(tenant_id), str(batch_id), reason)


@app.task(base=BatchTask, bind=True, name=names.INGEST_BATCH,
          serializer=BATCH_SERIALIZER, compression=BATCH_COMPRESSION)
def ingest_batch(self: UbiTask, *, batch_id: str, tenant_id: str, events_json: str,
                 received_at: str, correlation_id: str | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    """Store one accepted batch exactly once (events, rollups, dirty subjects, state)."""
    received = datetime.fromisoformat(received_at)
    with session_scope() as claim:
        if not ingest.claim_batch(claim, batch_id, tenant_id, correlation_id, received):
            return {"batch_id": batch_id, "skipped": True}
    try:
        outcome = ingest.store_batch(
            self.session, batch_id=batch_id, tenant_id=tenant_id, events_json=events_json,
            received_at=received, correlation_id=correlation_id,
            pseudonymiser=_pseudonymiser(get_settings().pseudonym_secret))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PermanentTaskError(f"batch {batch_id} cannot be decoded: {exc}") from exc
    return {"batch_id": batch_id, "inserted": outcome.inserted,
            "duplicates": outcome.duplicates, "dirty": outcome.dirty}
