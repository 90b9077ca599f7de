"""dirty_subjects.focus: whether a sequence event marked the pair

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:20:00

The features step recomputed the focus time of every dirty pair (and the day after) from its
stored sequence events, although only sequence events can change it; ingestion now records
with each pair whether one of them marked it (``focus``, OR-merged by the upsert), and the
step refreshes only those. Existing rows get 1 (refresh, as before), and so do rows the old
code writes during a rolling deploy (it does not know the column). Adding a column with a
constant default is a catalogue change on PostgreSQL 11+: no rewrite, no long lock.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dirty_subjects", sa.Column("focus", sa.SmallInteger(), nullable=False,
                                              server_default=sa.text("1")))


def downgrade() -> None:
    with op.batch_alter_table("dirty_subjects") as batch:
        batch.drop_column("focus")
