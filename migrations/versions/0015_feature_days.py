"""Compact feature storage: one row per subject and day (feature_days) replaces features

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 12:00:00

``features`` held one row per subject × feature × window × day (a UUID key, window bounds, JSON
metadata, a correlation id, two indexes); ``feature_days`` holds one row per (tenant, scope,
subject, day) with one packed column per window (``ubi/store/features.py``). Ids, window
bounds, dimensions and units are derived; ``metadata.partial`` is kept (one byte per window);
the correlation id, read by nothing, goes.

On PostgreSQL the rows are converted while writers go on: a trigger on ``features`` records
the subject-days written from then on in ``feature_days_pending``, the rows are converted in
keyed ranges of subjects, each range in a transaction of its own, then the recorded
subject-days are converted again until none is left; only the last of those, the trigger's
removal and the drop hold a lock on ``features``. SQLite (the embedded default, one process)
converts in the migration's transaction. The downgrade rebuilds ``features`` the same way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ubi.analytics.calendar import day_number
from ubi.analytics.ids import feature_id
from ubi.models.base import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = sa.DateTime(timezone=True)
KEY = ("tenant_id", "actor_scope", "subject_id", "day")

#: The taxonomy as of this revision (name, dimension, volume only, unit, windows): a later
#: change of ``ubi/analytics/taxonomy.py`` must not change what this migration converts.
_FEATURES = (
    ("event_count", "activity", True, "events", ("24h", "7d", "28d")),
    ("commit_count", "activity", True, "commits", ("24h", "7d", "28d")),
    ("active_days", "activity", False, "days", ("7d", "28d")),
    ("build_failure_rate", "activity", False, "", ("24h", "7d", "28d")),
    ("test_failure_rate", "activity", False, "", ("24h", "7d", "28d")),
    ("pr_throughput", "activity", False, "PRs merged", ("24h", "7d", "28d")),
    ("rework_ratio", "activity", False, "", ("24h", "7d", "28d")),
    ("context_switch_rate", "flow", False, "/h", ("24h", "7d", "28d")),
    ("focus_session_avg_minutes", "flow", False, "min", ("24h", "7d", "28d")),
    ("after_hours_ratio", "flow", False, "", ("24h", "7d", "28d")),
    ("late_night_events", "flow", False, "events", ("24h", "7d", "28d")),
    ("reviews_given", "collaboration", False, "reviews", ("24h", "7d", "28d")),
    ("distinct_collaborators", "collaboration", False, "people", ("24h", "7d", "28d")),
    ("cross_team_interactions", "collaboration", False, "interactions", ("24h", "7d", "28d")),
    ("llm_requests", "agent_usage", True, "requests", ("24h", "7d", "28d")),
    ("llm_failure_rate", "agent_usage", False, "", ("24h", "7d", "28d")),
    ("llm_requests_per_work_item", "agent_usage", False, "requests/item", ("24h", "7d", "28d")),
    ("override_count", "agent_usage", False, "overrides", ("24h", "7d", "28d")),
)
_WINDOWS = {"24h": ("w24h", 1), "7d": ("w7d", 7), "28d": ("w28d", 28)}
#: Per window, the features its column holds, in order.
_SLOTS = {w: [f for f in _FEATURES if w in f[4]] for w in _WINDOWS}
_PARTIAL = {None: 0, False: 1, True: 2}
_PARTIAL_OF = {v: k for k, v in _PARTIAL.items()}
#: Subject-days per converted range (about 53 feature rows each).
BATCH = 2000

_features = sa.table(
    "features", *(sa.column(c) for c in (
        "feature_id", "tenant_id", "actor_scope", "subject_id", "feature_name", "dimension",
        "window", "day", "value", "confidence", "correlation_id")),
    sa.column("window_start", UTCDateTime), sa.column("window_end", UTCDateTime),
    sa.column("metadata", JSON), sa.column("computed_at", UTCDateTime))
def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _utc(ts: Any) -> datetime:
    if isinstance(ts, str):  # SQLite through a plain column
        ts = datetime.fromisoformat(ts)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _as_date(day: Any) -> date:
    return date.fromisoformat(day) if isinstance(day, str) else day


@contextmanager
def _transaction(conn: sa.Connection) -> Iterator[None]:
    """A transaction of its own (PostgreSQL, inside an autocommit block); elsewhere the
    migration's."""
    if not _postgres():
        yield
        return
    conn.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def _ranges(conn: sa.Connection, table: str, columns: Sequence[str], step: int
            ) -> Iterator[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]]:
    """Keyed ranges (after, through] of ``columns`` (a prefix of an index), about ``step``
    rows each; None = unbounded."""
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(f":k{i}" for i in range(len(columns)))
    after: tuple[Any, ...] | None = None
    while True:
        where = f"WHERE ({cols}) > ({marks}) " if after is not None else ""
        params = {f"k{i}": v for i, v in enumerate(after or ())}
        row = conn.execute(sa.text(
            f"SELECT {cols} FROM {table} {where}ORDER BY {cols} LIMIT 1 OFFSET :n"),
            {**params, "n": step}).first()
        through = tuple(row) if row is not None else None
        yield after, through
        if through is None:
            return
        after = through


def _in_range(columns: Sequence[str], after: tuple[Any, ...] | None,
              through: tuple[Any, ...] | None) -> tuple[str, dict[str, Any]]:
    cols = ", ".join(f'"{c}"' for c in columns)
    parts, params = [], {}
    for name, bound, op_ in (("a", after, ">"), ("b", through, "<=")):
        if bound is not None:
            marks = ", ".join(f":{name}{i}" for i in range(len(bound)))
            parts.append(f"({cols}) {op_} ({marks})")
            params.update({f"{name}{i}": v for i, v in enumerate(bound)})
    return (" AND ".join(parts) or "1 = 1"), params


# --- features -> feature_days ------------------------------------------------------------------

def _packed_rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The feature_days rows of feature rows (tenant, scope, subject, name, window, day,
    value, confidence, metadata, computed_at)."""
    cells: dict[tuple[str, str, str, date], dict[str, Any]] = defaultdict(dict)
    for tenant, scope, subject, name, window, day, value, conf, meta, computed in rows:
        if window not in _WINDOWS:
            continue
        cell = cells[(tenant, scope, subject, _as_date(day))]
        cell.setdefault("computed_at", []).append(_utc(computed))
        meta = json.loads(meta) if isinstance(meta, str) else (meta or {})
        cell.setdefault(window, (conf, meta.get("partial"), {}))[2][name] = value
    out = []
    for (tenant, scope, subject, day), cell in cells.items():
        row: dict[str, Any] = {"tenant_id": tenant, "actor_scope": scope,
                               "subject_id": subject, "day": day,
                               "computed_at": max(cell.pop("computed_at"))}
        for window, (column, _) in _WINDOWS.items():
            if window not in cell:
                row[column] = None
                continue
            conf, partial, values = cell[window]
            floats = [conf, *(values.get(f[0]) for f in _SLOTS[window])]
            row[column] = bytes([_PARTIAL[partial]]) + np.asarray(
                [np.nan if v is None else v for v in floats], dtype="<f8").tobytes()
        out.append(row)
    return out


_FEATURE_COLUMNS = ('tenant_id, actor_scope, subject_id, feature_name, "window", day, value, '
                    'confidence, metadata, computed_at')


def _upsert_days(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    conn.execute(sa.text(
        "INSERT INTO feature_days (tenant_id, actor_scope, subject_id, day, w24h, w7d, w28d, "
        "computed_at) VALUES (:tenant_id, :actor_scope, :subject_id, :day, :w24h, :w7d, "
        ":w28d, :computed_at) ON CONFLICT (tenant_id, actor_scope, subject_id, day) DO UPDATE "
        "SET w24h = excluded.w24h, w7d = excluded.w7d, w28d = excluded.w28d, "
        "computed_at = excluded.computed_at").bindparams(
        *(sa.bindparam(c, type_=sa.LargeBinary) for c, _ in _WINDOWS.values()),
        sa.bindparam("computed_at", type_=UTCDateTime)), rows)


def _convert_range(conn: sa.Connection, after: tuple[Any, ...] | None,
                   through: tuple[Any, ...] | None) -> None:
    where, params = _in_range(KEY[:3], after, through)
    rows = conn.execute(sa.text(f"SELECT {_FEATURE_COLUMNS} FROM features WHERE {where}"),
                        params).all()
    _upsert_days(conn, _packed_rows(rows))


#: The keys of ``_catch_up`` as a relation (typed: psycopg sends lists untyped).
_KEYS = ("unnest(CAST(:k0 AS text[]), CAST(:k1 AS text[]), CAST(:k2 AS text[]), "
         "CAST(:k3 AS date[]))")


def _catch_up(conn: sa.Connection, *, limit: int | None) -> int:
    """Convert again the subject-days the trigger recorded (at most ``limit`` of them)."""
    keys = conn.execute(sa.text(
        "DELETE FROM feature_days_pending WHERE (tenant_id, actor_scope, subject_id, day) IN "
        "(SELECT tenant_id, actor_scope, subject_id, day FROM feature_days_pending "
        + (f"LIMIT {int(limit)}" if limit else "") + ") "
        "RETURNING tenant_id, actor_scope, subject_id, day")).all()
    if not keys:
        return 0
    arrays = {f"k{i}": [k[i] for k in keys] for i in range(4)}
    conn.execute(sa.text(
        "DELETE FROM feature_days f USING " + _KEYS + " AS k(t, s, u, d) "
        "WHERE f.tenant_id = k.t AND f.actor_scope = k.s AND f.subject_id = k.u "
        "AND f.day = k.d"), arrays)
    rows = conn.execute(sa.text(
        f"SELECT {', '.join('f.' + c for c in _FEATURE_COLUMNS.split(', '))} FROM features f "
        "JOIN " + _KEYS + " AS k(t, s, u, d) ON f.tenant_id = k.t "
        "AND f.actor_scope = k.s AND f.subject_id = k.u AND f.day = k.d"), arrays).all()
    _upsert_days(conn, _packed_rows(rows))
    return len(keys)


_PENDING_TRIGGER = ("""
CREATE TABLE feature_days_pending (
    tenant_id varchar(64), actor_scope varchar(8), subject_id varchar(256), day date,
    PRIMARY KEY (tenant_id, actor_scope, subject_id, day))""", """
CREATE FUNCTION feature_days_pending_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO feature_days_pending
        VALUES (OLD.tenant_id, OLD.actor_scope, OLD.subject_id, OLD.day) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO feature_days_pending
        VALUES (NEW.tenant_id, NEW.actor_scope, NEW.subject_id, NEW.day) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$""", """
CREATE TRIGGER features_pending AFTER INSERT OR UPDATE OR DELETE ON features
    FOR EACH ROW EXECUTE FUNCTION feature_days_pending_mark()""")
_DROP_PENDING = ("DROP TRIGGER IF EXISTS features_pending ON features",
                 "DROP FUNCTION IF EXISTS feature_days_pending_mark()",
                 "DROP TABLE IF EXISTS feature_days_pending")


def _execute_all(statements: Sequence[str]) -> None:
    for statement in statements:
        op.execute(statement)


def _create_feature_days() -> None:
    op.create_table(
        "feature_days",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("actor_scope", sa.String(length=8), nullable=False),
        sa.Column("subject_id", sa.String(length=256), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("w24h", sa.LargeBinary(), nullable=True),
        sa.Column("w7d", sa.LargeBinary(), nullable=True),
        sa.Column("w28d", sa.LargeBinary(), nullable=True),
        sa.Column("computed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name=op.f("pk_feature_days")),
    )
    op.create_index("ix_feature_days_tenant_day", "feature_days", ["tenant_id", "day"])
    if _postgres():
        # Room for in-place (HOT) updates: today's rows are rewritten by every features run.
        op.execute('ALTER TABLE "feature_days" SET (fillfactor = 70)')


def _convert(conn: sa.Connection, convert: Callable[[sa.Connection, Any, Any], None],
             table: str, columns: Sequence[str], step: int) -> None:
    for after, through in _ranges(conn, table, columns, step):
        with _transaction(conn):
            convert(conn, after, through)


def upgrade() -> None:
    _create_feature_days()
    conn = op.get_bind()
    if not _postgres():
        _convert(conn, _convert_range, "features", KEY[:3], BATCH * 53)
        op.drop_table("features")
        return
    _execute_all(_DROP_PENDING)  # a failed earlier run
    _execute_all(_PENDING_TRIGGER)
    with op.get_context().autocommit_block():
        # Writers see the trigger from here on: what they write after a range is read is
        # recorded, and converted again below.
        _convert(conn, _convert_range, "features", KEY[:3], BATCH * 53)
        for _ in range(100):  # until the writers leave (almost) nothing behind
            with _transaction(conn):
                if _catch_up(conn, limit=BATCH) < BATCH:
                    break
    # The rest under a lock that waits for writers in flight and keeps new ones out; short:
    # only what was written since the last pass is left.
    op.execute("LOCK TABLE features IN EXCLUSIVE MODE")
    _catch_up(conn, limit=None)
    _execute_all(_DROP_PENDING)
    op.drop_table("features")


# --- feature_days -> features ------------------------------------------------------------------

def _feature_rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for tenant, scope, subject, day, computed, *columns in rows:
        day = _as_date(day)
        n = day_number(day)
        for (window, (_, w)), packed in zip(_WINDOWS.items(), columns, strict=True):
            if packed is None:
                continue
            packed = bytes(packed)
            partial = _PARTIAL_OF[packed[0]]
            floats = np.frombuffer(packed, dtype="<f8", offset=1).tolist()
            start = datetime.combine(day - timedelta(days=w - 1), time(), tzinfo=UTC)
            end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
            for (name, dimension, volume_only, unit, _), v in zip(
                    _SLOTS[window], floats[1:], strict=True):
                meta: dict[str, Any] = {"volume_only": volume_only, "unit": unit}
                if partial is not None:
                    meta["partial"] = partial
                out.append({
                    "feature_id": feature_id(tenant, scope, subject, name, window, n),
                    "tenant_id": tenant, "actor_scope": scope, "subject_id": subject,
                    "feature_name": name, "dimension": dimension, "window": window,
                    "day": day, "window_start": start, "window_end": end,
                    "value": None if v != v else v, "confidence": floats[0],
                    "metadata": meta, "correlation_id": None,
                    "computed_at": _utc(computed)})
    return out


def _restore_range(conn: sa.Connection, after: tuple[Any, ...] | None,
                   through: tuple[Any, ...] | None) -> None:
    where, params = _in_range(KEY, after, through)
    rows = conn.execute(sa.text(
        "SELECT tenant_id, actor_scope, subject_id, day, computed_at, w24h, w7d, w28d "
        f"FROM feature_days WHERE {where}"), params).all()
    feature_rows = _feature_rows(rows)
    if feature_rows:
        conn.execute(sa.insert(_features), feature_rows)


def downgrade() -> None:
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
        sa.UniqueConstraint("tenant_id", "actor_scope", "subject_id", "feature_name", "window",
                            "day", name="uq_features_key"),
    )
    op.create_index("ix_features_tenant_day", "features", ["tenant_id", "day"], unique=False)
    conn = op.get_bind()
    if _postgres():
        op.execute('ALTER TABLE "features" SET (fillfactor = 70)')
    # The old code is not running yet while a downgrade runs (it is deployed after it), so
    # nothing writes feature_days meanwhile: ranges in transactions of their own, no catch-up.
    with op.get_context().autocommit_block() if _postgres() else nullcontext():
        _convert(conn, _restore_range, "feature_days", KEY, BATCH)
    op.drop_index("ix_feature_days_tenant_day", table_name="feature_days")
    op.drop_table("feature_days")
