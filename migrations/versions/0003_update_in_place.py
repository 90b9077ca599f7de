"""room for in-place (HOT) updates on the tables the pipeline rewrites

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:20:00

Feature values and daily rollups are upserted again and again (every batch that touches an
actor rewrites its current windows); none of the rewritten columns is indexed, so with free
space on the page PostgreSQL can update a row in place without touching its indexes (a HOT
update). A full page (fillfactor 100, the default) forces a new tuple elsewhere and an entry
in every index. Only pages written from now on get the free space.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: table -> fillfactor (percent of a page filled by inserts)
TABLES = {"features": 70, "daily_rollups": 80, "daily_interactions": 80,
          "daily_work_items": 80, "dirty_subjects": 70, "ingestion_state": 50}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, fillfactor in TABLES.items():
        op.execute(f'ALTER TABLE "{table}" SET (fillfactor = {fillfactor})')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE "{table}" RESET (fillfactor)')
