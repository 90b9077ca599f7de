"""read side: one feedback per reader and signal, signals in creation order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:30:00

A reader's verdict on a signal is one row they can change (``POST /signals/{id}/feedback``),
so (signal, reader) is unique; it records when it last changed. ``POST /query/signals``
pages newest first by (created_at, signal_id) with a keyset cursor, which stays stable while
new signals are stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("signal_feedback", sa.Column("updated_at", sa.DateTime(timezone=True),
                                               nullable=True))
    op.execute("UPDATE signal_feedback SET updated_at = created_at")
    with op.batch_alter_table("signal_feedback") as batch:  # (SQLite alters by copy)
        batch.alter_column("updated_at", existing_type=sa.DateTime(timezone=True),
                           nullable=False)
    op.create_index("uq_signal_feedback_reader", "signal_feedback",
                    ["signal_id", "submitted_by"], unique=True)
    op.create_index("ix_signals_tenant_created", "signals",
                    ["tenant_id", "created_at", "signal_id"])


def downgrade() -> None:
    op.drop_index("ix_signals_tenant_created", table_name="signals")
    op.drop_index("uq_signal_feedback_reader", table_name="signal_feedback")
    with op.batch_alter_table("signal_feedback") as batch:
        batch.drop_column("updated_at")
