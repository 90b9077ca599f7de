"""One run per (step, tenant) at a time, across worker processes and hosts."""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models.session import is_postgres


def tenant_lock(session: Session, name: str, tenant_id: str) -> bool:
    """A transaction-scoped lock per (step, tenant): one run at a time, released on commit or
    crash. Always granted on the embedded store (one process)."""
    if not is_postgres(session):
        return True
    key = zlib.crc32(f"{name}:{tenant_id}".encode()) - 2**31
    return bool(session.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"),
                                {"k": key}).scalar())
