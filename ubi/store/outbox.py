"""Writing signal versions to the stream's outbox (``signal_outbox``, SPEC §12)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import SignalOutbox, table_of
from ubi.models.session import dialect_insert, is_postgres
from ubi.store import bulk

#: One row per signal version: a version written twice (a redelivered run) is one row.
VERSION_KEY = ["tenant_id", "signal_id", "version"]


def insert_signal_versions(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add outbox rows (``signal_outbox`` columns but ``id``); a version already there is
    left as it is. ``id`` orders a tenant's versions on the stream: PostgreSQL's sequence
    numbers them; SQLite cannot autoincrement a column of the composite key (tenant_id, id),
    so they are numbered here after the largest id."""
    table = table_of(SignalOutbox)
    if not rows:
        return
    if not is_postgres(session):
        # SQLite has one writer at a time; this no-op write takes the database's write lock
        # for the transaction before the largest id is read, so no other writer numbers the
        # same ids.
        session.execute(sa.update(table).where(sa.false()).values(id=table.c.id))
        first = int(session.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))
                                    ).scalar_one()) + 1
        rows = [{**row, "id": first + k} for k, row in enumerate(rows)]
    for part in bulk.chunks(rows, 1000):
        session.execute(dialect_insert(session, table).values(list(part))
                        .on_conflict_do_nothing(index_elements=VERSION_KEY))
