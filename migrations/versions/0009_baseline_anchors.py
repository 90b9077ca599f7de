"""baseline anchors: "new normal" feedback re-anchors an actor's baselines

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:45:00

SPEC §5.2: from an anchor day on, a subject's baseline for the named features learns only from
the days after it. Anchors are rows that are superseded or undone, never deleted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baseline_anchors",
        sa.Column("anchor_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("actor_scope", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(256), nullable=False),
        sa.Column("feature_name", sa.String(64), nullable=False),
        sa.Column("anchor_day", sa.Date, nullable=False),
        sa.Column("signal_id", sa.String(36), nullable=False),
        sa.Column("feedback_id", sa.String(36), nullable=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_by", sa.String(256), nullable=True),
        sa.Column("undo_reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_baseline_anchors_tenant_active", "baseline_anchors",
                    ["tenant_id", "undone_at"])


def downgrade() -> None:
    op.drop_index("ix_baseline_anchors_tenant_active", table_name="baseline_anchors")
    op.drop_table("baseline_anchors")
