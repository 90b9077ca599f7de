"""The signal outbox's primary key leads with tenant_id: (tenant_id, id)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 21:30:00

The last per-tenant table whose key did not (``tests/unit/test_tenant_keys.py``). ``id`` stays
the order of a tenant's versions on the stream. On PostgreSQL it keeps its sequence, and the new
key is built with ``CREATE UNIQUE INDEX CONCURRENTLY`` (writes go on) and swapped in by a short
``ALTER TABLE ... USING INDEX``, as 0014 and 0017 did. SQLite copies the table; it cannot
autoincrement a column of a composite key, so its inserts number their rows
(``ubi.store.outbox``). A downgrade restores the key on ``id`` alone (and SQLite's rowid
numbering).
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_TABLE, _KEY = "signal_outbox", "pk_signal_outbox"


def _swap(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        building = f"{_KEY}_next"
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")  # a failed earlier run
            op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {building} ON {_TABLE} "
                       f"({', '.join(columns)})")
        op.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_KEY}, "
                   f"ADD CONSTRAINT {_KEY} PRIMARY KEY USING INDEX {building}")
        return
    with op.batch_alter_table(_TABLE, recreate="always") as batch:
        batch.drop_constraint(_KEY, type_="primary")
        batch.create_primary_key(_KEY, columns)


def upgrade() -> None:
    _swap(["tenant_id", "id"])


def downgrade() -> None:
    _swap(["id"])
