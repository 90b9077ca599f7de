"""Migrations upgrade a fresh database and downgrade it cleanly; events are day-partitioned."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL
from tests.support import resources
from tests.support.features import features_table, old_feature_rows
from ubi.models import Base
from ubi.models.session import create_db_engine
from ubi.services import schema
from ubi.store import partitions


@pytest.fixture
def scratch_db(settings):
    name = f"ubi_scratch_{uuid.uuid4().hex[:10]}"
    resources.create_database(PG_ADMIN_URL, name)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield settings.replace(database_url=url)
    finally:
        resources.drop_database(PG_ADMIN_URL, name)
        assert not resources.database_exists(PG_ADMIN_URL, name)


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(scratch_db) -> None:
    schema.upgrade(scratch_db)
    tables = _tables(scratch_db.database_url)
    assert set(Base.metadata.tables) <= tables
    assert "events_default" in tables

    schema.downgrade(scratch_db, "base")
    assert _tables(scratch_db.database_url) == {"alembic_version"}
    engine = create_db_engine(scratch_db.database_url)
    with engine.connect() as conn:
        funcs: Sequence[str] = conn.execute(sa.text(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'ubi_%'")).scalars().all()
    engine.dispose()
    assert funcs == []

    schema.upgrade(scratch_db)  # and up again, cleanly
    assert set(Base.metadata.tables) <= _tables(scratch_db.database_url)


def _fillfactors(url: str) -> dict[str, str]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows: Sequence[tuple[str, list[str]]] = conn.execute(sa.text(
                "SELECT relname, reloptions FROM pg_class WHERE reloptions IS NOT NULL")).all()
        return {name: opt.split("=", 1)[1] for name, opts in rows
                for opt in opts if opt.startswith("fillfactor=")}
    finally:
        engine.dispose()


def test_rewritten_tables_leave_room_for_in_place_updates(scratch_db) -> None:
    schema.upgrade(scratch_db)
    ff = _fillfactors(scratch_db.database_url)
    assert ff["feature_days"] == "70" and ff["daily_rollups"] == "80", ff
    schema.downgrade(scratch_db, "0014")
    assert _fillfactors(scratch_db.database_url)["features"] == "70"
    schema.downgrade(scratch_db, "0002")
    assert "features" not in _fillfactors(scratch_db.database_url)


def _event_row(tenant: str, event_id: str, day: date) -> dict[str, object]:
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return {"tenant_id": tenant, "event_date": day, "event_id": event_id, "actor_id": "a" * 64,
            "actor_type": "human", "event_type": "commit_created", "timestamp_utc": ts,
            "utc_offset_minutes": 0, "ingested_at": ts, "received_at": ts, "properties": {},
            "resource": {}, "privacy_tags": [], "schema_version": "1.0"}


def test_events_partitioned_by_day_with_maintenance_functions(scratch_db) -> None:
    from ubi.models import Event
    from ubi.models.session import session_factory

    schema.upgrade(scratch_db)
    partitions.forget_known_partitions()
    today = date(2026, 11, 26)
    days = [today - timedelta(days=i) for i in range(4)]
    with session_factory(scratch_db)() as session:
        created = partitions.ensure_partitions(session, days, today=today)
        assert created == 4
        assert partitions.ensure_partitions(session, days, today=today) == 0  # cached, idempotent
        old_day = today - timedelta(days=partitions.PARTITION_HORIZON_DAYS + 10)
        session.execute(sa.insert(Event), [_event_row("t1", f"e{i}", d)
                                           for i, d in enumerate([*days, old_day])])
        session.commit()
        placed: dict[str, int] = dict(session.execute(sa.text(
            "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1")).all())
        assert placed == {f"events_p{d:%Y%m%d}": 1 for d in days} | {"events_default": 1}
        assert {d for d in partitions.existing_partitions(session)} == set(days)

        dropped = partitions.drop_partitions_before(session, today - timedelta(days=1))
        session.commit()
        assert dropped == 2
        assert partitions.existing_partitions(session) == {today, today - timedelta(days=1)}
        remaining = session.execute(sa.select(sa.func.count()).select_from(Event)).scalar()
        assert remaining == 3  # two days' partitions dropped, the default partition kept


def test_sequence_events_have_their_own_partial_index_on_every_partition(scratch_db) -> None:
    """Focus time reads only sequence events (``services/focus_time``): the partial index
    exists on every day partition, created now or later, and covers exactly those types."""
    from ubi.analytics.taxonomy import SEQUENCE_EVENT_TYPES
    from ubi.models.session import session_factory

    schema.upgrade(scratch_db)
    partitions.forget_known_partitions()
    today = date(2026, 11, 26)
    with session_factory(scratch_db)() as session:
        partitions.ensure_partitions(session, [today, today - timedelta(days=1)], today=today)
        session.commit()
        rows: Sequence[tuple[str, str]] = session.execute(sa.text(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid "
            "WHERE c.relname LIKE 'events%' AND i.indpred IS NOT NULL")).all()
    indexed = {name for name, _ in rows}
    assert {"events", f"events_p{today:%Y%m%d}", "events_default"} <= indexed
    for _, predicate in rows:
        assert set(re.findall(r"'([a-z_]+)'", predicate)) == SEQUENCE_EVENT_TYPES


def test_the_focus_read_scans_only_the_partitions_of_its_days(scratch_db) -> None:
    """With months of daily partitions, the sequence-event read of focus time plans a scan of
    the partitions of the days it asks for, not of every partition for every pair."""
    from ubi.models.session import session_factory
    from ubi.services import focus_time

    schema.upgrade(scratch_db)
    partitions.forget_known_partitions()
    today = date(2026, 11, 26)
    days = [today - timedelta(days=i) for i in range(60)]
    pairs = sorted({(f"actor-{i}", d) for i in range(20) for d in days[:2]})
    with session_factory(scratch_db)() as session:
        assert partitions.ensure_partitions(session, days, today=today) == 60
        plan = "\n".join(session.connection().exec_driver_sql(
            "EXPLAIN " + focus_time._READ_PG, focus_time._read_params("acme", pairs)
        ).scalars())
    scanned = set(re.findall(r" on (events_\w+)", plan))
    assert scanned <= {f"events_p{d:%Y%m%d}" for d in days[:2]} | {"events_default"}, plan
    partitions.forget_known_partitions()


def test_focus_time_moves_to_its_own_table_and_back(scratch_db) -> None:
    """Migration 0005: the rollups' focus columns become ``daily_focus`` rows (only where
    there is focus), and a downgrade puts them back."""
    schema.upgrade(scratch_db, "0004")
    engine = create_db_engine(scratch_db.database_url)
    day = date(2026, 11, 20)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO daily_rollups (tenant_id, actor_id, day, actor_type, "
                "focus_minutes, focus_sessions, updated_at) VALUES "
                "('t1', 'a1', :d, 'human', 42.5, 2, now()), "
                "('t1', 'a2', :d, 'human', 0, 0, now())"), {"d": day})
        schema.upgrade(scratch_db)
        with engine.connect() as conn:
            moved = conn.execute(sa.text(
                "SELECT tenant_id, actor_id, day, focus_minutes, focus_sessions "
                "FROM daily_focus")).all()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("daily_rollups")}
        assert moved == [("t1", "a1", day, 42.5, 2)]
        assert not {"focus_minutes", "focus_sessions"} & columns

        schema.downgrade(scratch_db, "0004")
        with engine.connect() as conn:
            back = conn.execute(sa.text(
                "SELECT actor_id, focus_minutes, focus_sessions FROM daily_rollups "
                "ORDER BY actor_id")).all()
            tables = set(sa.inspect(conn).get_table_names())
        assert back == [("a1", 42.5, 2), ("a2", 0.0, 0)]
        assert "daily_focus" not in tables
    finally:
        engine.dispose()


def _local_days_fixture(url: str) -> None:
    """Rows of three actors on UTC day 2026-11-20 (before 0011), then 0011's bits for them."""
    day = date(2026, 11, 20)
    events = [  # (actor, UTC hour, offset minutes)
        ("west", 1, -480),  # 17:00 on the 19th in UTC-8
        ("west", 20, -480),  # 12:00 on the 20th
        ("east", 16, 540),  # 01:00 on the 21st in UTC+9
    ]
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            for i, (actor, hour, offset) in enumerate(events):
                ts = datetime(2026, 11, 20, hour, tzinfo=UTC)
                conn.execute(sa.text(
                    "INSERT INTO events (tenant_id, event_date, event_id, actor_id, actor_type, "
                    "event_type, timestamp_utc, utc_offset_minutes, ingested_at, received_at, "
                    "properties, resource, privacy_tags, schema_version) VALUES ('t1', :d, :e, "
                    ":a, 'human', 'commit_created', :ts, :o, :ts, :ts, '{}', '{}', '[]', '1.0')"),
                    {"d": day, "e": f"e{i}", "a": actor, "ts": ts.replace(tzinfo=None)
                     if url.startswith("sqlite") else ts, "o": offset})
            for actor in ("west", "east", "gone"):  # "gone": its events no longer stored
                conn.execute(sa.text(
                    "INSERT INTO daily_rollups (tenant_id, actor_id, day, actor_type, "
                    "updated_at) VALUES ('t1', :a, :d, 'human', :now)"),
                    {"a": actor, "d": day, "now": datetime(2026, 11, 21, tzinfo=UTC)})
    finally:
        engine.dispose()


def _local_days(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text(
                "SELECT actor_id, local_days FROM daily_rollups")).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_local_days_are_filled_from_the_stored_events(backend, scratch_db, tmp_path) -> None:
    """Migration 0011: each rollup row gets the local days its stored events fell on (bits
    1 / 2 / 4: the day before / the same / the day after); a row without stored events keeps
    2, the reading before it. On both backends (the embedded default is SQLite)."""
    settings = (scratch_db if backend == "postgresql" else scratch_db.replace(
        database_url=f"sqlite:///{tmp_path / 'ubi.sqlite3'}"))
    schema.upgrade(settings, "0010")
    _local_days_fixture(settings.database_url)
    schema.upgrade(settings)
    assert _local_days(settings.database_url) == {"west": 1 | 2, "east": 4, "gone": 2}
    schema.downgrade(settings, "0010")
    engine = create_db_engine(settings.database_url)
    try:
        assert "local_days" not in {c["name"] for c in sa.inspect(engine).get_columns(
            "daily_rollups")}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_pending_signals_get_the_class_in_their_routing_key(backend, scratch_db,
                                                            tmp_path) -> None:
    """Migration 0013: pending outbox rows are rewritten to the six-word routing key (a dot
    in a tenant id escaped), published ones are left alone; the defaults are seeded."""
    settings = scratch_db if backend == "postgresql" else scratch_db.replace(
        database_url=f"sqlite:///{tmp_path / 'ubi.db'}")
    schema.upgrade(settings, "0012")
    engine = create_db_engine(settings.database_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            for sid, tenant, status in (("s1", "acme.eu", "pending"), ("s2", "acme", "published")):
                payload = {"tenant_id": tenant, "actor_scope": "team", "dimension": "flow",
                           "signal_type": "risk", "signal_class": "context_thrash",
                           "severity": "WARN"}
                conn.execute(sa.insert(sa.table(
                    "signal_outbox", sa.column("signal_id"), sa.column("version"),
                    sa.column("tenant_id"), sa.column("routing_key"),
                    sa.column("payload", sa.JSON), sa.column("headers", sa.JSON),
                    sa.column("status"), sa.column("attempts"),
                    sa.column("next_attempt_at"), sa.column("created_at"))).values(
                    signal_id=sid, version=1, tenant_id=tenant,
                    routing_key=f"{tenant}.team.flow.risk.WARN", payload=payload, headers={},
                    status=status, attempts=0, next_attempt_at=now, created_at=now))
        schema.upgrade(settings)
        with engine.connect() as conn:
            keys: dict[str, str] = dict(conn.execute(sa.text(
                "SELECT signal_id, routing_key FROM signal_outbox")).all())
            names: set[str] = set(conn.execute(sa.text(
                "SELECT name FROM stream_subscriptions")).scalars())
        assert keys == {"s1": "acme%2Eeu.team.flow.risk.context_thrash.WARN",
                        "s2": "acme.team.flow.risk.WARN"}
        assert names == {"ubi.signals.mmm", "ubi.signals.detection"}
        schema.downgrade(settings, "0012")
        with engine.connect() as conn:
            keys = dict(conn.execute(sa.text(
                "SELECT signal_id, routing_key FROM signal_outbox")).all())
        assert keys["s1"] == "acme.eu.team.flow.risk.WARN"
    finally:
        engine.dispose()


def _key_columns(url: str) -> dict[str, list[list[str]]]:
    """Each table's primary key and unique keys (constraints and indexes), as reflected."""
    engine = create_db_engine(url)
    try:
        inspector = sa.inspect(engine)
        out: dict[str, list[list[str]]] = {}
        for table in ("anomalies", "signal_versions", "signal_outbox", "signal_feedback"):
            keys = [inspector.get_pk_constraint(table)["constrained_columns"]]
            keys += [list(u["column_names"]) for u in inspector.get_unique_constraints(table)]
            keys += [[str(c) for c in i["column_names"]]
                     for i in inspector.get_indexes(table) if i["unique"]]
            out[table] = sorted(keys)
        return out
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_keys_lead_with_the_tenant_and_back(backend, scratch_db, tmp_path) -> None:
    """Migration 0014: the keys of anomalies and signal versions, outbox and feedback lead
    with tenant_id (built concurrently on PostgreSQL); a downgrade restores the old ones."""
    settings = (scratch_db if backend == "postgresql" else scratch_db.replace(
        database_url=f"sqlite:///{tmp_path / 'ubi.sqlite3'}"))
    schema.upgrade(settings, "0013")
    before = _key_columns(settings.database_url)
    schema.upgrade(settings, "0014")
    after = _key_columns(settings.database_url)
    # signal_outbox keeps its surrogate id (tests/unit/test_tenant_keys.py says why)
    assert all(cols[0] == "tenant_id" for keys in after.values() for cols in keys
               if cols != ["id"]), after
    schema.downgrade(settings, "0013")
    assert _key_columns(settings.database_url) == before


def _outbox_row(signal_id: str, tenant: str, now: datetime) -> dict[str, object]:
    return {"signal_id": signal_id, "version": 1, "tenant_id": tenant,
            "routing_key": f"{tenant}.team.flow.risk.context_thrash.WARN",
            "payload": {"signal_id": signal_id}, "headers": {}, "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_signal_outbox_key_leads_with_the_tenant_and_back(backend, scratch_db,
                                                               tmp_path) -> None:
    """Migration 0018: the outbox's key becomes (tenant_id, id) with its rows and their ids
    (the order of a tenant's versions on the stream); new rows number after them on both
    backends; a downgrade restores the key on id and the rows."""
    from ubi.store import outbox

    settings = (scratch_db if backend == "postgresql" else scratch_db.replace(
        database_url=f"sqlite:///{tmp_path / 'ubi.sqlite3'}"))
    now = datetime(2026, 12, 1, tzinfo=UTC)
    schema.upgrade(settings, "0017")
    engine = create_db_engine(settings.database_url)
    table = sa.table("signal_outbox", *(sa.column(c) for c in (
        "id", "signal_id", "version", "tenant_id", "routing_key", "status", "attempts",
        "next_attempt_at", "created_at")), sa.column("payload", sa.JSON),
        sa.column("headers", sa.JSON))

    def stored() -> list[tuple[int, str, str]]:
        with engine.connect() as conn:
            rows: Sequence[tuple[int, str, str]] = conn.execute(sa.text(
                "SELECT id, tenant_id, signal_id FROM signal_outbox ORDER BY id")).all()
            return list(rows)

    try:
        with engine.begin() as conn:  # the old key numbers rows itself on both backends
            conn.execute(sa.insert(table), [_outbox_row("s1", "acme", now),
                                            _outbox_row("s2", "beta", now)])
        before = stored()
        schema.upgrade(settings, "0018")
        assert _key_columns(settings.database_url)["signal_outbox"][0] == ["tenant_id", "id"]
        assert stored() == before
        with sa.orm.Session(engine) as session:
            outbox.insert_signal_versions(session, [_outbox_row("s3", "acme", now),
                                                    _outbox_row("s1", "acme", now)])  # known
            session.commit()
        after = stored()
        assert after[:2] == before and [r[1:] for r in after[2:]] == [("acme", "s3")]
        assert after[2][0] > before[-1][0]
        schema.downgrade(settings, "0017")
        assert _key_columns(settings.database_url)["signal_outbox"][0] == ["id"]
        assert stored() == after
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [_outbox_row("s4", "beta", now)])
        assert stored()[-1][0] > after[-1][0]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_features_become_subject_days_and_back(backend, scratch_db, tmp_path) -> None:
    """Migration 0015: the rows of ``features`` become one ``feature_days`` row per subject
    and day, read back as the same records (ids, values, confidences, metadata, window
    bounds); a downgrade rebuilds ``features`` as it was (without correlation ids)."""
    from ubi.models import session_factory
    from ubi.store import features as feature_store

    settings = (scratch_db if backend == "postgresql" else scratch_db.replace(
        database_url=f"sqlite:///{tmp_path / 'ubi.sqlite3'}"))
    schema.upgrade(settings, "0014")
    rows = old_feature_rows()
    table = features_table()
    engine = create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        schema.upgrade(settings, "0015")
        assert "features" not in _tables(settings.database_url)
        with session_factory(settings)() as session:
            read = [r for tenant in ("acme", "globex")
                    for r in feature_store.records(session, tenant)]
            assert session.execute(sa.text("SELECT count(*) FROM feature_days")).scalar() == 4
        got = {r.feature_id: {
            "feature_id": r.feature_id, "tenant_id": r.tenant_id,
            "actor_scope": r.actor_scope, "subject_id": r.subject_id,
            "feature_name": r.feature_name, "dimension": r.dimension, "window": r.window,
            "day": r.day, "window_start": r.window_start, "window_end": r.window_end,
            "value": r.value, "confidence": r.confidence, "metadata": r.metadata,
            "correlation_id": None, "computed_at": r.computed_at} for r in read}
        assert len(got) == len(read) == len(rows)
        assert got == {r["feature_id"]: r for r in rows}

        schema.downgrade(settings, "0014")
        assert "feature_days" not in _tables(settings.database_url)
        with engine.connect() as conn:
            back = {r["feature_id"]: dict(r) for r in conn.execute(
                sa.select(table)).mappings()}
        assert back == {r["feature_id"]: r for r in rows}
    finally:
        engine.dispose()


def test_features_written_during_the_conversion_are_caught_up(scratch_db) -> None:
    """Migration 0015 on a live PostgreSQL: rows the old code writes while the ranges are
    converted (an update, a new subject-day, a subject-day deleted) reach feature_days before
    ``features`` is dropped. The writer holds a lock that lets the conversion run and makes
    its final step wait, then writes and commits while it waits."""
    import threading

    from tests.support.resources import wait_for_lock_waiter
    from ubi.models import session_factory
    from ubi.store import features as feature_store

    schema.upgrade(scratch_db, "0014")
    rows = old_feature_rows()
    table = features_table()
    engine = create_db_engine(scratch_db.database_url)
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            schema.upgrade(scratch_db, "0015")
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)

    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        new_day = [dict(r, tenant_id="acme", subject_id="a9", feature_id=f"new-{i}")
                   for i, r in enumerate(rows) if r["subject_id"] == "a1"
                   and r["day"] == date(2026, 11, 19)]
        with engine.connect() as writer:
            writer.begin()
            # ROW SHARE: the trigger can be created, the final EXCLUSIVE lock must wait.
            writer.execute(sa.text("LOCK TABLE features IN ROW SHARE MODE"))
            thread = threading.Thread(target=migrate)
            thread.start()
            assert wait_for_lock_waiter(engine, timeout=60) == 1, failed
            changed = next(r for r in rows if r["subject_id"] == "t1"
                           and r["feature_name"] == "event_count" and r["window"] == "7d")
            writer.execute(sa.update(table).where(
                table.c.feature_id == changed["feature_id"]).values(value=42.0))
            writer.execute(sa.insert(table), new_day)
            writer.execute(sa.delete(table).where(table.c.tenant_id == "globex"))
            writer.commit()
            thread.join(timeout=120)
        assert not thread.is_alive() and not failed, failed
        want = {(r["tenant_id"], r["subject_id"], r["feature_name"], r["window"], r["day"]):
                42.0 if r is changed else r["value"]
                for r in [*rows, *new_day] if r["tenant_id"] == "acme"}
        with session_factory(scratch_db)() as session:
            got = {(r.tenant_id, r.subject_id, r.feature_name, r.window, r.day): r.value
                   for tenant in ("acme", "globex")
                   for r in feature_store.records(session, tenant)}
        assert got == want
        assert not {"features", "feature_days_pending"} & _tables(scratch_db.database_url)
    finally:
        engine.dispose()
