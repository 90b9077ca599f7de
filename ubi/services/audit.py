"""The audit log (``audit_log``): what people and UBI did that must be accountable. Key names,
counts and ids only: never property values, never raw actor ids."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ubi.models import AuditEntry


def record(session: Session, *, tenant_id: str | None, action: str, principal: str | None,
           details: dict[str, Any], now: datetime, request_id: str | None = None,
           correlation_id: str | None = None, batch_id: str | None = None) -> None:
    """Add an entry in the caller's transaction."""
    session.add(AuditEntry(tenant_id=tenant_id, occurred_at=now, action=action,
                           principal=principal, details=details, request_id=request_id,
                           correlation_id=correlation_id, batch_id=batch_id))
