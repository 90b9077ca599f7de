"""What UBI derives: features, baselines, anomalies, scores and signals (SPEC §5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ubi.models.base import Base, JSONType, UTCDateTime


class FeatureDay(Base):
    """Every feature value of one subject on one day, for every window (SPEC §5.1 records
    are read through ``ubi.store.features``).

    One column per window (``ubi.store.features.WINDOW_COLUMNS``), null when the window has no
    values that day, else packed little-endian doubles: the window's confidence, then its
    features' values in ``taxonomy.FEATURES`` order (NaN = null), after one byte of metadata
    (``metadata.partial``). Ids, window bounds, dimension, unit are derived, not stored.
    """

    __tablename__ = "feature_days"
    __table_args__ = (
        sa.Index("ix_feature_days_tenant_day", "tenant_id", "day"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    subject_id: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    w24h: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    w7d: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    w28d: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Baseline(Base):
    """Normal range of one feature of one subject, per day type (SPEC §5.2)."""

    __tablename__ = "baselines"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "actor_scope", "subject_id", "feature_name", "window",
                            "day_type", name="uq_baselines_key"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    baseline_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8))
    subject_id: Mapped[str] = mapped_column(sa.String(256))
    feature_name: Mapped[str] = mapped_column(sa.String(64))
    window: Mapped[str] = mapped_column(sa.String(8))
    day_type: Mapped[str] = mapped_column(sa.String(8))
    mean: Mapped[float | None] = mapped_column(sa.Float)
    std_dev: Mapped[float | None] = mapped_column(sa.Float)
    p50: Mapped[float | None] = mapped_column(sa.Float)
    p90: Mapped[float | None] = mapped_column(sa.Float)
    p95: Mapped[float | None] = mapped_column(sa.Float)
    n_observations: Mapped[int] = mapped_column(sa.Integer)
    confidence: Mapped[float] = mapped_column(sa.Float)
    algorithm: Mapped[dict[str, Any]] = mapped_column(JSONType)
    as_of_day: Mapped[date | None] = mapped_column(sa.Date)
    last_recomputed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Anomaly(Base):
    """A feature outside its subject's normal range (SPEC §5.3)."""

    __tablename__ = "anomalies"
    __table_args__ = (
        # One active anomaly per (subject, feature, window).
        sa.Index("uq_anomalies_active", "tenant_id", "actor_scope", "subject_id",
                 "feature_name", "window", unique=True,
                 postgresql_where=sa.text("status = 'active'"),
                 sqlite_where=sa.text("status = 'active'")),
        sa.Index("ix_anomalies_tenant_detected", "tenant_id", "detected_at"),
    )

    # Keys lead with the tenant (Citus distribution column, docs/architecture.md).
    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    anomaly_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8))
    subject_id: Mapped[str] = mapped_column(sa.String(256))
    feature_name: Mapped[str] = mapped_column(sa.String(64))
    dimension: Mapped[str] = mapped_column(sa.String(32))
    window: Mapped[str] = mapped_column(sa.String(8))
    day: Mapped[date] = mapped_column(sa.Date)
    value: Mapped[float | None] = mapped_column(sa.Float)
    z_score: Mapped[float] = mapped_column(sa.Float)
    direction: Mapped[str] = mapped_column(sa.String(8))
    severity: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(8))
    baseline_id: Mapped[str | None] = mapped_column(sa.String(36))
    feature_ids: Mapped[list[Any]] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(sa.Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    within_band_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_day: Mapped[date | None] = mapped_column(sa.Date)
    baseline_mean: Mapped[float | None] = mapped_column(sa.Float)
    baseline_std: Mapped[float | None] = mapped_column(sa.Float)
    confidence: Mapped[float | None] = mapped_column(sa.Float)


class Score(Base):
    """A 0–100 dimension score of a subject; 50 is the subject's own normal (SPEC §5.4)."""

    __tablename__ = "scores"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    subject_id: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    dimension: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    window: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    score: Mapped[float | None] = mapped_column(sa.Float)
    previous_score: Mapped[float | None] = mapped_column(sa.Float)
    confidence: Mapped[float] = mapped_column(sa.Float)
    components: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reason: Mapped[str] = mapped_column(sa.Text)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Signal(Base):
    """A ``BehaviouralSignal`` (SPEC §5.5); ``version`` rises on every state change."""

    __tablename__ = "signals"
    __table_args__ = (
        sa.Index("uq_signals_active", "tenant_id", "actor_scope", "subject_id", "signal_class",
                 unique=True, postgresql_where=sa.text("status = 'active'"),
                 sqlite_where=sa.text("status = 'active'")),
        sa.Index("ix_signals_tenant_updated", "tenant_id", "updated_at"),
        sa.Index("ix_signals_tenant_created", "tenant_id", "created_at", "signal_id"),
        sa.Index("ix_signals_tenant_subject", "tenant_id", "actor_scope", "subject_id"),
        # Feedback of a privileged caller names the signal alone.
        sa.Index("ix_signals_signal_id", "signal_id"),
    )

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    signal_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8))
    subject_id: Mapped[str] = mapped_column(sa.String(256))
    actor_type: Mapped[str | None] = mapped_column(sa.String(16))
    team_id: Mapped[str | None] = mapped_column(sa.String(256))
    dimension: Mapped[str] = mapped_column(sa.String(32))
    signal_class: Mapped[str] = mapped_column(sa.String(64))
    signal_type: Mapped[str] = mapped_column(sa.String(16))
    score: Mapped[float] = mapped_column(sa.Float)
    severity: Mapped[str] = mapped_column(sa.String(8))
    confidence: Mapped[float] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(8))
    reason: Mapped[str] = mapped_column(sa.Text)
    evidence_refs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    features_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    intent: Mapped[str | None] = mapped_column(sa.Text)
    expected_outcome: Mapped[str | None] = mapped_column(sa.Text)
    day: Mapped[date] = mapped_column(sa.Date)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(sa.Integer)
    #: Lifecycle bookkeeping of the rules (UTC days; triggers that fired).
    first_day: Mapped[date | None] = mapped_column(sa.Date)
    last_fired_day: Mapped[date | None] = mapped_column(sa.Date)
    days_without_fire: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    triggers: Mapped[list[Any]] = mapped_column(JSONType, default=list,
                                                server_default=sa.text("'[]'"))


class SignalVersion(Base):
    """Every state of every signal, as published (the stream's ``message_id`` is id:version)."""

    __tablename__ = "signal_versions"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    signal_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    change: Mapped[str] = mapped_column(sa.String(16))  # created|updated|resolved
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SignalFeedback(Base):
    """A reader's verdict on a signal; feeds threshold suggestions (SPEC §6, §10)."""

    __tablename__ = "signal_feedback"
    __table_args__ = (sa.Index("ix_signal_feedback_tenant_created", "tenant_id", "created_at"),
                      sa.Index("uq_signal_feedback_reader", "tenant_id", "signal_id",
                               "submitted_by", unique=True))

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    feedback_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    signal_id: Mapped[str] = mapped_column(sa.String(36))
    signal_class: Mapped[str] = mapped_column(sa.String(64))
    dimension: Mapped[str] = mapped_column(sa.String(32))
    verdict: Mapped[str] = mapped_column(sa.String(16))
    note: Mapped[str | None] = mapped_column(sa.Text)
    submitted_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BaselineAnchor(Base):
    """A "new normal" (SPEC §5.2): from ``anchor_day`` on, the baselines of one subject's
    feature (every window) learn only from the days after it. Made by ``new_normal`` feedback
    on a signal, superseded by a later anchor of the same series, undone by an admin or when
    the reader changes the verdict; rows are never deleted, so the history stays readable."""

    __tablename__ = "baseline_anchors"
    __table_args__ = (sa.Index("ix_baseline_anchors_tenant_active", "tenant_id", "undone_at"),)

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    anchor_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    actor_scope: Mapped[str] = mapped_column(sa.String(8))
    subject_id: Mapped[str] = mapped_column(sa.String(256))
    feature_name: Mapped[str] = mapped_column(sa.String(64))
    anchor_day: Mapped[date] = mapped_column(sa.Date)
    signal_id: Mapped[str] = mapped_column(sa.String(36))
    feedback_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_by: Mapped[str] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    undone_by: Mapped[str | None] = mapped_column(sa.String(256))
    undo_reason: Mapped[str | None] = mapped_column(sa.String(64))
