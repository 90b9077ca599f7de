"""signal stream: named subscriptions, per-tenant publish buckets, class in the routing key

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 09:00:00

Subscriptions (issue 22) are rows, declared on the broker by ``ubi broker declare`` and at
worker start; the two defaults are seeded here and can be removed like any other. The routing
key gains the signal class (SPEC §12: ``<tenant>.<scope>.<dimension>.<type>.<class>.
<severity>``), so pending outbox rows are rewritten from their payload: with the old key they
would match no binding. The drain claims each tenant's oldest pending rows: an index for it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def _field(dialect: str, name: str) -> str:
    if dialect == "postgresql":
        return f"(payload ->> '{name}')"
    return f"json_extract(payload, '$.{name}')"


def _rewrite_keys(tenant: str, words: tuple[str, ...]) -> None:
    dialect = op.get_bind().dialect.name
    key = " || '.' || ".join([tenant] + [_field(dialect, w) for w in words])
    op.execute(f"UPDATE signal_outbox SET routing_key = {key} WHERE status = 'pending'")


def upgrade() -> None:
    subs = op.create_table(
        "stream_subscriptions",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("tenants", _JSON, nullable=False),
        sa.Column("actor_scopes", _JSON, nullable=False),
        sa.Column("dimensions", _JSON, nullable=False),
        sa.Column("signal_types", _JSON, nullable=False),
        sa.Column("signal_classes", _JSON, nullable=False),
        sa.Column("min_severity", sa.String(16), nullable=False),
        sa.Column("overflow", sa.String(16), nullable=False),
        sa.Column("max_length", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "stream_rate_buckets",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signal_outbox_tenant_pending", "signal_outbox", ["tenant_id", "id"],
                    postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    any_: list[str] = []
    op.bulk_insert(subs, [
        {"name": name, "tenants": any_, "actor_scopes": any_, "dimensions": any_,
         "signal_types": any_, "signal_classes": any_, "min_severity": severity,
         "overflow": "park", "max_length": 100_000, "created_at": now}
        for name, severity in (("ubi.signals.mmm", "INFO"), ("ubi.signals.detection", "WARN"))])
    # A dot in a tenant id would split its word of the key (docs/stream.md).
    _rewrite_keys("replace(tenant_id, '.', '%2E')",
                  ("actor_scope", "dimension", "signal_type", "signal_class", "severity"))


def downgrade() -> None:
    _rewrite_keys("tenant_id", ("actor_scope", "dimension", "signal_type", "severity"))
    op.drop_index("ix_signal_outbox_tenant_pending", table_name="signal_outbox")
    op.drop_table("stream_rate_buckets")
    op.drop_table("stream_subscriptions")
