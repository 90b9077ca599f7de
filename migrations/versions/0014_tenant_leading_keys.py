"""Keys that lead with tenant_id: anomalies, signal versions, outbox and feedback

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 09:00:00

So the schema can be distributed by tenant on Citus without change (docs/architecture.md,
"Outgrowing one PostgreSQL"): a distributed table's primary and unique keys must contain the
distribution column. ``tests/unit/test_tenant_keys.py`` checks every table's keys.

On PostgreSQL each new key is built first with ``CREATE UNIQUE INDEX CONCURRENTLY`` (outside a
transaction, writes go on), then swapped in by one short ``ALTER TABLE`` that only renames
and attaches it (``USING INDEX``): no long lock on a live database. SQLite copies the table.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: (table, kind, name, old columns, new columns); kind: pk, uq (constraint) or ux (index).
_KEYS = [
    ("anomalies", "pk", "pk_anomalies", ["anomaly_id"], ["tenant_id", "anomaly_id"]),
    ("signal_versions", "pk", "pk_signal_versions", ["signal_id", "version"],
     ["tenant_id", "signal_id", "version"]),
    ("signal_outbox", "uq", "uq_signal_outbox_version", ["signal_id", "version"],
     ["tenant_id", "signal_id", "version"]),
    ("signal_feedback", "pk", "pk_signal_feedback", ["feedback_id"],
     ["tenant_id", "feedback_id"]),
    ("signal_feedback", "ux", "uq_signal_feedback_reader", ["signal_id", "submitted_by"],
     ["tenant_id", "signal_id", "submitted_by"]),
]


def _swap_pg(table: str, kind: str, name: str, columns: list[str]) -> None:
    building = f"{name}_next"
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")  # a failed earlier run
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {building} ON {table} "
                   f"({', '.join(columns)})")
    if kind == "ux":
        op.execute(f"DROP INDEX {name}")
        op.execute(f"ALTER INDEX {building} RENAME TO {name}")
        return
    constraint = "PRIMARY KEY" if kind == "pk" else "UNIQUE"
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}, "
               f"ADD CONSTRAINT {name} {constraint} USING INDEX {building}")


def _swap_sqlite(table: str, kind: str, name: str, columns: list[str]) -> None:
    if kind == "ux":
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=True)
        return
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(name, type_="primary" if kind == "pk" else "unique")
        if kind == "pk":
            batch.create_primary_key(name, columns)
        else:
            batch.create_unique_constraint(name, columns)


def _swap(new: bool) -> None:
    swap = _swap_pg if op.get_bind().dialect.name == "postgresql" else _swap_sqlite
    for table, kind, name, old_columns, new_columns in _KEYS:
        swap(table, kind, name, new_columns if new else old_columns)


def upgrade() -> None:
    _swap(new=True)


def downgrade() -> None:
    _swap(new=False)
