"""task_outbox: one pending row per follow-up key, delayed follow-ups

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 07:00:00

"At most one pending run per step and tenant" had four mechanisms (outbox de-duplication, a
Redis queued-mark, Redis look-again keys, advisory locks for the run itself). The pending run
is now the outbox row alone: a row with a ``dedupe_key`` is pending from its commit until its
task starts (``started_at``), and a partial unique index allows one such row per key; a busy
step's next look is a row with ``not_before``. Rows sent before this revision count as
started (their tasks ran or will read everything committed before them); of several waiting
rows of one key the oldest stays pending.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_PENDING = "started_at IS NULL AND dedupe_key IS NOT NULL"


def upgrade() -> None:
    op.add_column("task_outbox", sa.Column("not_before", sa.DateTime(timezone=True)))
    op.add_column("task_outbox", sa.Column("started_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE task_outbox SET started_at = dispatched_at WHERE dispatched_at IS NOT NULL")
    op.execute("""
        UPDATE task_outbox SET started_at = created_at
        WHERE started_at IS NULL AND dedupe_key IS NOT NULL AND id > (
            SELECT min(o.id) FROM task_outbox o WHERE o.task_name = task_outbox.task_name
              AND o.dedupe_key = task_outbox.dedupe_key AND o.started_at IS NULL)
    """)
    op.create_index("uq_task_outbox_pending_key", "task_outbox", ["task_name", "dedupe_key"],
                    unique=True, postgresql_where=sa.text(_PENDING),
                    sqlite_where=sa.text(_PENDING))


def downgrade() -> None:
    op.drop_index("uq_task_outbox_pending_key", table_name="task_outbox")
    op.drop_column("task_outbox", "started_at")
    op.drop_column("task_outbox", "not_before")
