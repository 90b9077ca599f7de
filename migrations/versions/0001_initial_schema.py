"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 09:56:48.272807
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)

# Daily partitions of ``events`` are created on demand (ingest) and ahead of time (maintenance);
# rows of days without a partition (very old history) land in the default partition. An
# advisory lock serialises creators so two workers never race on the same partition name.
PARTITION_FUNCTIONS = """
CREATE OR REPLACE FUNCTION ubi_ensure_event_partitions(p_from date, p_to date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := p_from;
    created integer := 0;
    part text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ubi_event_partitions'));
    WHILE d <= p_to LOOP
        part := 'events_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           part, d, d + 1);
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END $$;

CREATE OR REPLACE FUNCTION ubi_drop_event_partitions(p_before date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ubi_event_partitions'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = 'events' AND c.relname ~ '^events_p[0-9]{8}$'
          AND to_date(substr(c.relname, 9), 'YYYYMMDD') < p_before
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

CREATE TABLE events_default PARTITION OF events DEFAULT;
"""

DROP_PARTITION_FUNCTIONS = """
DROP FUNCTION IF EXISTS ubi_drop_event_partitions(date);
DROP FUNCTION IF EXISTS ubi_ensure_event_partitions(date, date);
"""


def upgrade() -> None:
    op.create_table(
        "anomalies",
        sa.Column("anomaly_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("feature_name", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("z_score", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("baseline_id", sa.String(length=36), nullable=True),
        sa.Column("feature_ids", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("within_band_since", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("anomaly_id", name=op.f("pk_anomalies")),
    )
    op.create_index(
        "ix_anomalies_tenant_detected", "anomalies", ["tenant_id", "detected_at"], unique=False
    )
    op.create_index(
        "uq_anomalies_active",
        "anomalies",
        ["tenant_id", "actor_scope", "subject_id", "feature_name", "window"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        "ix_audit_log_tenant_time", "audit_log", ["tenant_id", "occurred_at"], unique=False
    )
    op.create_table(
        "baselines",
        sa.Column("baseline_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("feature_name", sa.String(length=64), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("day_type", sa.String(length=8), nullable=False),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("std_dev", sa.Float(), nullable=True),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p90", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("n_observations", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("algorithm", JSON, nullable=False),
        sa.Column("as_of_day", sa.Date(), nullable=True),
        sa.Column("last_recomputed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("baseline_id", name=op.f("pk_baselines")),
        sa.UniqueConstraint(
            "tenant_id",
            "actor_scope",
            "subject_id",
            "feature_name",
            "window",
            "day_type",
            name="uq_baselines_key",
        ),
    )
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("submitted_by", sa.String(length=256), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("stored_duplicates", sa.Integer(), nullable=False),
        sa.Column("counted_only", sa.Integer(), nullable=False),
        sa.Column("dropped", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_batches")),
    )
    op.create_index(
        "ix_batches_tenant_created", "batches", ["tenant_id", "created_at"], unique=False
    )
    op.create_table(
        "daily_interactions",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("counterpart_id", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "actor_id", "day", "counterpart_id", name=op.f("pk_daily_interactions")
        ),
    )
    op.create_table(
        "daily_rollups",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("team_id", sa.String(length=256), nullable=True),
        sa.Column("event_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("after_hours", sa.Integer(), server_default="0", nullable=False),
        sa.Column("late_night", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_file_edited", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_file_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_file_deleted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_build_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_build_succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_test_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_test_passed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pr_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pr_merged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pr_closed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pr_reviewed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_pr_commented", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_commit_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_commit_pushed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_llm_request_submitted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_llm_request_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_llm_request_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_context_switch", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_focus_session_started", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_focus_session_ended", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_gate_evaluated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_policy_violation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_override_attempted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("hours_mask", sa.Integer(), server_default="0", nullable=False),
        sa.Column("focus_minutes", sa.Float(), server_default="0", nullable=False),
        sa.Column("focus_sessions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_event_at", TS, nullable=True),
        sa.Column("last_event_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "actor_id", "day", name=op.f("pk_daily_rollups")),
    )
    op.create_index(
        "ix_daily_rollups_tenant_day", "daily_rollups", ["tenant_id", "day"], unique=False
    )
    op.create_table(
        "daily_work_items",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("work_item_id", sa.String(length=256), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("llm_requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "actor_id", "day", "work_item_id", name=op.f("pk_daily_work_items")
        ),
    )
    op.create_table(
        "deletion_jobs",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("time_from", TS, nullable=True),
        sa.Column("time_to", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_deletion_jobs")),
    )
    op.create_table(
        "dirty_subjects",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.Column("marked_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "actor_id", "day", name=op.f("pk_dirty_subjects")),
    )
    op.create_table(
        "event_keys",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "event_id", name=op.f("pk_event_keys")),
    )
    op.create_index(
        "ix_event_keys_tenant_date", "event_keys", ["tenant_id", "event_date"], unique=False
    )
    op.create_table(
        "events",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("team_id", sa.String(length=256), nullable=True),
        sa.Column("source_system", sa.String(length=256), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("timestamp_utc", TS, nullable=False),
        sa.Column("utc_offset_minutes", sa.SmallInteger(), nullable=False),
        sa.Column("ingested_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("resource", JSON, nullable=False),
        sa.Column("privacy_tags", JSON, nullable=False),
        sa.Column("schema_version", sa.String(length=32), nullable=False),
        sa.Column("trace_id", sa.String(length=128), nullable=True),
        sa.Column("span_id", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("environment", sa.String(length=64), nullable=True),
        sa.Column("producer_id", sa.String(length=128), nullable=True),
        sa.Column("sequence_no", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "event_date", "event_id", name=op.f("pk_events")),
        postgresql_partition_by="RANGE (event_date)",
    )
    op.create_index(
        "ix_events_tenant_actor_ts",
        "events",
        ["tenant_id", "actor_id", "timestamp_utc"],
        unique=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PARTITION_FUNCTIONS)
    op.create_table(
        "features",
        sa.Column("feature_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("feature_name", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("window_end", TS, nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("computed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("feature_id", name=op.f("pk_features")),
        sa.UniqueConstraint(
            "tenant_id",
            "actor_scope",
            "subject_id",
            "feature_name",
            "window",
            "day",
            name="uq_features_key",
        ),
    )
    op.create_index("ix_features_tenant_day", "features", ["tenant_id", "day"], unique=False)
    op.create_table(
        "ingestion_state",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("newest_ingested_at", TS, nullable=True),
        sa.Column("newest_event_at", TS, nullable=True),
        sa.Column("last_received_at", TS, nullable=True),
        sa.Column("last_baseline_recompute_at", TS, nullable=True),
        sa.Column("last_day_closed", sa.Date(), nullable=True),
        sa.Column("gap_open_since", TS, nullable=True),
        sa.Column("events_total", sa.BigInteger(), nullable=False),
        sa.Column("pending_events", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_ingestion_state")),
    )
    op.create_table(
        "receipt_outbox",
        sa.Column("receipt_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("receipt_id", name=op.f("pk_receipt_outbox")),
    )
    op.create_index(
        "ix_receipt_outbox_pending", "receipt_outbox", ["status", "next_attempt_at"], unique=False
    )
    op.create_table(
        "retention_decisions",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("policy_id", sa.String(length=128), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "month", name=op.f("pk_retention_decisions")),
    )
    op.create_table(
        "scores",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("previous_score", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("components", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("computed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "actor_scope",
            "subject_id",
            "dimension",
            "window",
            "day",
            name=op.f("pk_scores"),
        ),
    )
    op.create_table(
        "signal_feedback",
        sa.Column("feedback_id", sa.String(length=36), nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("signal_class", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("submitted_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name=op.f("pk_signal_feedback")),
    )
    op.create_index(
        "ix_signal_feedback_tenant_created",
        "signal_feedback",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "signal_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("routing_key", sa.String(length=255), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_outbox")),
        sa.UniqueConstraint("signal_id", "version", name="uq_signal_outbox_version"),
    )
    op.create_index(
        "ix_signal_outbox_pending", "signal_outbox", ["status", "next_attempt_at"], unique=False
    )
    op.create_table(
        "signal_versions",
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("snapshot", JSON, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("signal_id", "version", name=op.f("pk_signal_versions")),
    )
    op.create_table(
        "signals",
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=True),
        sa.Column("team_id", sa.String(length=256), nullable=True),
        sa.Column("dimension", sa.String(length=32), nullable=False),
        sa.Column("signal_class", sa.String(length=64), nullable=False),
        sa.Column("signal_type", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence_refs", JSON, nullable=False),
        sa.Column("features_snapshot", JSON, nullable=False),
        sa.Column("intent", sa.Text(), nullable=True),
        sa.Column("expected_outcome", sa.Text(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_signals")),
    )
    op.create_index(
        "ix_signals_tenant_subject",
        "signals",
        ["tenant_id", "actor_scope", "subject_id"],
        unique=False,
    )
    op.create_index(
        "ix_signals_tenant_updated", "signals", ["tenant_id", "updated_at"], unique=False
    )
    op.create_index(
        "uq_signals_active",
        "signals",
        ["tenant_id", "actor_scope", "subject_id", "signal_class"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "task_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("task_name", sa.String(length=128), nullable=False),
        sa.Column("kwargs", JSON, nullable=False),
        sa.Column("dedupe_key", sa.String(length=256), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("dispatched_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_outbox")),
    )
    op.create_index("ix_task_outbox_pending", "task_outbox", ["dispatched_at", "id"], unique=False)
    op.create_table(
        "tenant_configs",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("diff", JSON, nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("snapshot_hash", sa.String(length=80), nullable=False),
        sa.Column("receipt_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "version", name=op.f("pk_tenant_configs")),
    )
    op.create_table(
        "tenant_days",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("marked_at", TS, nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day", "reason", name=op.f("pk_tenant_days")),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_PARTITION_FUNCTIONS)
    op.drop_table("tenant_days")
    op.drop_table("tenant_configs")
    op.drop_index("ix_task_outbox_pending", table_name="task_outbox")
    op.drop_table("task_outbox")
    op.drop_index(
        "uq_signals_active",
        table_name="signals",
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.drop_index("ix_signals_tenant_updated", table_name="signals")
    op.drop_index("ix_signals_tenant_subject", table_name="signals")
    op.drop_table("signals")
    op.drop_table("signal_versions")
    op.drop_index("ix_signal_outbox_pending", table_name="signal_outbox")
    op.drop_table("signal_outbox")
    op.drop_index("ix_signal_feedback_tenant_created", table_name="signal_feedback")
    op.drop_table("signal_feedback")
    op.drop_table("scores")
    op.drop_table("retention_decisions")
    op.drop_index("ix_receipt_outbox_pending", table_name="receipt_outbox")
    op.drop_table("receipt_outbox")
    op.drop_table("ingestion_state")
    op.drop_index("ix_features_tenant_day", table_name="features")
    op.drop_table("features")
    op.drop_index("ix_events_tenant_actor_ts", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_event_keys_tenant_date", table_name="event_keys")
    op.drop_table("event_keys")
    op.drop_table("dirty_subjects")
    op.drop_table("deletion_jobs")
    op.drop_table("daily_work_items")
    op.drop_index("ix_daily_rollups_tenant_day", table_name="daily_rollups")
    op.drop_table("daily_rollups")
    op.drop_table("daily_interactions")
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    op.drop_table("batches")
    op.drop_table("baselines")
    op.drop_index("ix_audit_log_tenant_time", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(
        "uq_anomalies_active",
        table_name="anomalies",
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.drop_index("ix_anomalies_tenant_detected", table_name="anomalies")
    op.drop_table("anomalies")
