"""when the tenant's newest event was received

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 21:00:00

Days close by the clock (SPEC §9, "Closing days") only for a tenant whose events arrive as they
happen, never for a backfill or replay of old data. How current a tenant's stream is shows in
the time between its newest event and the moment that event was received; ``last_received_at``
cannot tell, as a late event of an old day moves it too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingestion_state", sa.Column("newest_event_received_at",
                                               sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("ingestion_state", "newest_event_received_at")
