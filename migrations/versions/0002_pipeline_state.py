"""pipeline state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:29:09.981873
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("anomalies", sa.Column("first_day", sa.Date(), nullable=True))
    op.add_column("anomalies", sa.Column("baseline_mean", sa.Float(), nullable=True))
    op.add_column("anomalies", sa.Column("baseline_std", sa.Float(), nullable=True))
    op.add_column("anomalies", sa.Column("confidence", sa.Float(), nullable=True))
    op.create_index("ix_batches_tenant_status", "batches", ["tenant_id", "status"], unique=False)
    op.add_column("ingestion_state", sa.Column("last_evaluated_day", sa.Date(), nullable=True))
    op.add_column("signals", sa.Column("first_day", sa.Date(), nullable=True))
    op.add_column("signals", sa.Column("last_fired_day", sa.Date(), nullable=True))
    op.add_column(
        "signals", sa.Column("days_without_fire", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "signals",
        sa.Column(
            "triggers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("signals", "triggers")
    op.drop_column("signals", "days_without_fire")
    op.drop_column("signals", "last_fired_day")
    op.drop_column("signals", "first_day")
    op.drop_column("ingestion_state", "last_evaluated_day")
    op.drop_index("ix_batches_tenant_status", table_name="batches")
    op.drop_column("anomalies", "confidence")
    op.drop_column("anomalies", "baseline_std")
    op.drop_column("anomalies", "baseline_mean")
    op.drop_column("anomalies", "first_day")
