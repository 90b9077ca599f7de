"""a partial index on the sequence events that focus time is computed from

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 16:05:00

Every ingested batch recomputes the focus time of the (actor, day) pairs it brought sequence
events for (``services/focus_time``). Through the (tenant, actor, timestamp) index that read
fetched every event of each actor-day from the heap to keep the ~10 % that are sequence events;
this index holds only those, so the read touches nothing else. Writes of other events do not
maintain it. Created on the partitioned parent, it is created on every partition, present and
future.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SEQUENCES = ("event_type IN ('context_switch', 'focus_session_started', "
             "'focus_session_ended')")


def upgrade() -> None:
    op.create_index("ix_events_sequences", "events", ["tenant_id", "actor_id", "event_date"],
                    postgresql_where=sa.text(SEQUENCES), sqlite_where=sa.text(SEQUENCES))


def downgrade() -> None:
    op.drop_index("ix_events_sequences", table_name="events")
