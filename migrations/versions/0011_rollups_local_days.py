"""daily_rollups.local_days: the local days a row's events fell on

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:30:00

Presence is read on each actor's own calendar (issue 18): a person in UTC-8 works on two UTC
days every day, so their days off never showed in UTC days. Bits 1 / 2 / 4 of a row of UTC
day D: one of its events fell on local day D - 1 / D / D + 1 in the event's own offset.

Existing rows are filled from the stored events (one grouped pass); rows whose events are gone
keep 2 (every event on its own UTC day: the reading before this revision). A tenant with a
configured timezone gets its rows' bits in that timezone from new events on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The local day of an event minus its UTC day (-1, 0 or +1), per dialect.
_DIFF = {
    "postgresql": ("(((timestamp_utc AT TIME ZONE 'UTC') "
                   "+ make_interval(mins => utc_offset_minutes))::date - event_date)"),
    "sqlite": ("CAST(julianday(date(timestamp_utc, utc_offset_minutes || ' minutes')) "
               "- julianday(event_date) AS INTEGER)"),
}


def upgrade() -> None:
    op.add_column("daily_rollups", sa.Column("local_days", sa.SmallInteger, nullable=False,
                                             server_default="2"))
    diff = _DIFF[op.get_bind().dialect.name]
    # Portable bit_or of three bits (SQLite has no bit_or aggregate).
    op.execute(f"""
        UPDATE daily_rollups SET local_days = s.bits
        FROM (SELECT tenant_id, actor_id, event_date,
                     MAX(CASE WHEN {diff} < 0 THEN 1 ELSE 0 END)
                     + 2 * MAX(CASE WHEN {diff} = 0 THEN 1 ELSE 0 END)
                     + 4 * MAX(CASE WHEN {diff} > 0 THEN 1 ELSE 0 END) AS bits
              FROM events GROUP BY tenant_id, actor_id, event_date) AS s
        WHERE daily_rollups.tenant_id = s.tenant_id AND daily_rollups.actor_id = s.actor_id
          AND daily_rollups.day = s.event_date AND daily_rollups.local_days <> s.bits
    """)


def downgrade() -> None:
    op.drop_column("daily_rollups", "local_days")
