"""Keys that lead with tenant_id: signals, baselines, anchors, batches, receipts

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09 09:00:00

The tables 0014 left, because each was looked up by its id alone: they are now looked up by
(tenant, id) wherever the tenant is known, and by the id alone only where a privileged caller
names a signal or a batch and no tenant (``ix_signals_signal_id``, ``ix_batches_batch_id``:
plain indexes, allowed on a distributed table). Baselines and receipts were never read by id
alone. ``tests/unit/test_tenant_keys.py`` checks every table's keys.

As in 0014: on PostgreSQL each new key is built with ``CREATE UNIQUE INDEX CONCURRENTLY``
(writes go on) and swapped in by a short ``ALTER TABLE ... USING INDEX``; the id indexes are
built concurrently too. SQLite copies the table.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: (table, primary key name, old columns, new columns)
_KEYS = [
    ("signals", "pk_signals", ["signal_id"], ["tenant_id", "signal_id"]),
    ("baselines", "pk_baselines", ["baseline_id"], ["tenant_id", "baseline_id"]),
    ("baseline_anchors", "pk_baseline_anchors", ["anchor_id"], ["tenant_id", "anchor_id"]),
    ("batches", "pk_batches", ["batch_id"], ["tenant_id", "batch_id"]),
    ("receipt_outbox", "pk_receipt_outbox", ["receipt_id"], ["tenant_id", "receipt_id"]),
]
#: Plain indexes for the lookups by id alone: (table, name, column).
_ID_INDEXES = [
    ("signals", "ix_signals_signal_id", "signal_id"),
    ("batches", "ix_batches_batch_id", "batch_id"),
]


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _swap_pg(table: str, name: str, columns: list[str]) -> None:
    building = f"{name}_next"
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")  # a failed earlier run
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {building} ON {table} "
                   f"({', '.join(columns)})")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}, "
               f"ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {building}")


def _swap_sqlite(table: str, name: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(name, type_="primary")
        batch.create_primary_key(name, columns)


def upgrade() -> None:
    swap = _swap_pg if _postgres() else _swap_sqlite
    for table, name, _old, new in _KEYS:
        swap(table, name, new)
    for table, name, column in _ID_INDEXES:
        if _postgres():
            with op.get_context().autocommit_block():
                op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} "
                           f"({column})")
        else:
            op.create_index(name, table, [column])


def downgrade() -> None:
    for table, name, _column in _ID_INDEXES:
        op.drop_index(name, table_name=table)
    swap = _swap_pg if _postgres() else _swap_sqlite
    for table, name, old, _new in _KEYS:
        swap(table, name, old)
