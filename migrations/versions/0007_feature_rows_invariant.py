"""the first evaluated day; feature refresh marks; no feature rows for windows without events

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:00:00

The consistency check of stored features (``ubi check features``) needs the range of days the
tenant has evaluated: every row of those days must exist. Existing tenants take the first day
they have scores for.

Detection never stored a feature row for a window without a single event; the features step
did (zero counts, null rates). Both now follow one rule (``engine.stored_cells``), and the
rows the features step wrote for such windows go.

``feature_refresh`` records the days whose stored features a later step owes a recompute:
team, cohort and tenant features of a closed day an event arrived late for (detection), and
every feature of a day an event arrived for after ``late_event_days`` (the full recompute).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_refresh",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("token", sa.String(36), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "day", name=op.f("pk_feature_refresh")),
    )
    op.add_column("ingestion_state", sa.Column("first_evaluated_day", sa.Date(), nullable=True))
    op.execute(
        "UPDATE ingestion_state SET first_evaluated_day = (SELECT min(s.day) FROM scores s "
        "WHERE s.tenant_id = ingestion_state.tenant_id) "
        "WHERE last_evaluated_day IS NOT NULL")
    op.execute(
        "DELETE FROM features WHERE EXISTS (SELECT 1 FROM features e "
        "WHERE e.feature_name = 'event_count' AND e.value = 0 "
        "AND e.tenant_id = features.tenant_id AND e.actor_scope = features.actor_scope "
        "AND e.subject_id = features.subject_id AND e.\"window\" = features.\"window\" "
        "AND e.day = features.day)")


def downgrade() -> None:
    # The deleted rows held only trivial values; they are not restored.
    op.drop_column("ingestion_state", "first_evaluated_day")
    op.drop_table("feature_refresh")
