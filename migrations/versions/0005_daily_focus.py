"""focus time in its own table, written by the features step

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:00:00

Focus time was recomputed by every ingested batch for the (actor, day) pairs it brought
sequence events for, reading all of those days' stored sequence events each time: at full
load that read was as costly as storing the batch, and all but the last of those computations
were overwritten before the features step read them. The features step now recomputes it once
per run for the pairs it computes (``services/focus_time``). It cannot write the rollup rows
for that: its transaction lasts seconds, and every batch upserting those rows would wait for
it. So focus moves to ``daily_focus``, which ingestion does not write (except for days too old
to be recomputed). Existing values move with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "daily_focus",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("focus_minutes", sa.Float(), nullable=False),
        sa.Column("focus_sessions", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "actor_id", "day"),
    )
    op.create_index("ix_daily_focus_tenant_day", "daily_focus", ["tenant_id", "day"])
    op.execute(
        "INSERT INTO daily_focus (tenant_id, actor_id, day, focus_minutes, focus_sessions, "
        "updated_at) SELECT tenant_id, actor_id, day, focus_minutes, focus_sessions, "
        "updated_at FROM daily_rollups WHERE focus_sessions <> 0 OR focus_minutes <> 0")
    with op.batch_alter_table("daily_rollups") as table:
        table.drop_column("focus_minutes")
        table.drop_column("focus_sessions")
    if op.get_bind().dialect.name == "postgresql":
        # Rewritten in place by every features run (migration 0003).
        op.execute('ALTER TABLE "daily_focus" SET (fillfactor = 80)')


def downgrade() -> None:
    with op.batch_alter_table("daily_rollups") as table:
        table.add_column(sa.Column("focus_minutes", sa.Float(), server_default="0",
                                   nullable=False))
        table.add_column(sa.Column("focus_sessions", sa.Integer(), server_default="0",
                                   nullable=False))
    op.execute(
        "UPDATE daily_rollups SET focus_minutes = (SELECT f.focus_minutes FROM daily_focus f "
        "WHERE f.tenant_id = daily_rollups.tenant_id AND f.actor_id = daily_rollups.actor_id "
        "AND f.day = daily_rollups.day), focus_sessions = (SELECT f.focus_sessions FROM "
        "daily_focus f WHERE f.tenant_id = daily_rollups.tenant_id AND f.actor_id = "
        "daily_rollups.actor_id AND f.day = daily_rollups.day) WHERE EXISTS (SELECT 1 FROM "
        "daily_focus f WHERE f.tenant_id = daily_rollups.tenant_id AND f.actor_id = "
        "daily_rollups.actor_id AND f.day = daily_rollups.day)")
    op.drop_index("ix_daily_focus_tenant_day", table_name="daily_focus")
    op.drop_table("daily_focus")
