"""Evidence of 1 KB or more goes to ERIS; the signal keeps a handle (SPEC §5.6).

A signal's ``evidence_refs`` under 1 KB (canonical JSON) is embedded as it is. A larger one is
written whole to the ERIS outbox as an evidence blob, and the signal keeps a handle
``{evidence_id, evidence_type, storage_location, expires_at}`` plus as much of the small parts
(event summary, feature and baseline ids, quoted values) as fits under 1 KB, so the stored
signal, the stream and the read API stay readable without a call to ERIS.

The evidence id is derived from the tenant and the content's SHA-256: the same evidence
stored twice (a re-run, a later version with the same evidence) is one blob and one outbox
row. Blobs are delivered by the receipts drain (``ubi/services/receipts.py``) with the same
backoff, breaker, 24 h window and dead-letter handling as receipts, and they expire at ERIS
when the tenant's retention would have deleted the signal (``retention_days``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ubi.analytics.explain import EVIDENCE_EMBED_LIMIT, evidence_size
from ubi.analytics.tenant_config import canonical_json
from ubi.integrations.eris import BLOBS_PATH
from ubi.models.outbox import ReceiptOutbox
from ubi.models.session import dialect_insert
from ubi.settings import Settings, get_settings

EVIDENCE_NAMESPACE = uuid.UUID("6f1d3c52-8a4e-5b7f-9c21-0e5d4a3b2c1f")
EVIDENCE_TYPE = "signal_evidence"
#: The outbox's resource type of an evidence blob (receipts are ``config`` and ``signal``).
RESOURCE_TYPE = "evidence"
#: The small parts kept beside the handle, in order of use to a reader, while under 1 KB.
_KEPT = ("event_summary", "feature_ids", "baseline_ids", "values")


def _canonical(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8")


def evidence_id(tenant_id: str, evidence: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(_canonical(dict(evidence))).hexdigest()
    return str(uuid.uuid5(EVIDENCE_NAMESPACE, f"{tenant_id}:{digest}"))


def externalise(session: Session, tenant_id: str, evidence: Mapping[str, Any], *,
                now: datetime, retention_days: int,
                settings: Settings | None = None) -> Mapping[str, Any]:
    """``evidence`` as the signal stores it: itself under 1 KB; else a handle and what fits,
    with the whole evidence owed to ERIS in this transaction."""
    if "evidence_handle" in evidence or evidence_size(evidence) < EVIDENCE_EMBED_LIMIT:
        return evidence
    settings = settings or get_settings()
    eid = evidence_id(tenant_id, evidence)
    expires = now + timedelta(days=retention_days)
    handle = {"evidence_id": eid, "evidence_type": EVIDENCE_TYPE,
              "storage_location": f"{settings.eris_url or 'eris:'}{BLOBS_PATH}/{eid}",
              "expires_at": expires.isoformat().replace("+00:00", "Z")}
    blob = {"evidence_id": eid, "tenant_id": tenant_id, "evidence_type": EVIDENCE_TYPE,
            "expires_at": handle["expires_at"],
            "sha256": hashlib.sha256(_canonical(dict(evidence))).hexdigest(),
            "content": dict(evidence)}
    stmt = dialect_insert(session, ReceiptOutbox.__table__).values(
        receipt_id=eid, tenant_id=tenant_id, resource_type=RESOURCE_TYPE, resource_id=eid,
        payload=blob, status="pending", attempts=0, next_attempt_at=now, created_at=now)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "receipt_id"]))
    kept: dict[str, Any] = {"evidence_handle": handle}
    for name in _KEPT:
        if name in evidence:
            trial = {**kept, name: evidence[name]}
            if evidence_size(trial) < EVIDENCE_EMBED_LIMIT:
                kept = trial
    return kept


def handles_of(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ERIS handles a signal's evidence refers to (for its receipt's ``evidence_handles``)."""
    handle = evidence.get("evidence_handle")
    return [dict(handle)] if isinstance(handle, Mapping) else []
