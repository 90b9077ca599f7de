"""Column-oriented upserts (``bulk.upsert_columns``) store exactly what row upserts store, on
PostgreSQL (numbers packed straight into binary arrays) and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models.base import UTCDateTime
from ubi.models.session import create_db_engine
from ubi.store import bulk

N = 300


def _table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("actor_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("big", sa.BigInteger, nullable=False),
        sa.Column("small", sa.Integer, nullable=False),
        sa.Column("ratio", sa.Float, nullable=False),
        sa.Column("mask", sa.BigInteger, nullable=False),
        sa.Column("label", sa.String(32)),
        sa.Column("first_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime),
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, database, tmp_path) -> Iterator[sa.Engine]:
    url = database if request.param == "postgresql" else f"sqlite:///{tmp_path}/bulk.db"
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def _batch(seed: int) -> dict[str, Sequence[Any] | np.ndarray]:
    rng = np.random.default_rng(seed)
    actors = [f"actor-{i % 97:03d}" for i in rng.permutation(N)]
    days = [date(2026, 11, 1) + timedelta(days=int(d)) for d in rng.integers(0, 3, N)]
    keys = sorted(set(zip(actors, days, strict=True)))  # unique keys, in no particular order
    order = rng.permutation(len(keys))
    n = len(keys)
    return {
        "actor_id": [keys[i][0] for i in order], "day": [keys[i][1] for i in order],
        "big": rng.integers(-(2 ** 61), 2 ** 61, n, dtype=np.int64),
        "small": rng.integers(-1000, 1000, n).astype(np.int32),
        "ratio": rng.normal(0.0, 1e6, n),
        "mask": rng.integers(0, 2 ** 24, n, dtype=np.int64),
        "label": [None if i % 7 == 0 else f"label-{i}" for i in range(n)],
        "first_at": [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=int(s))
                     for s in rng.integers(0, 10 ** 6, n)],
    }


def test_column_upserts_store_what_row_upserts_store(engine) -> None:
    suffix = uuid.uuid4().hex[:8]
    metadata = sa.MetaData()
    by_rows, by_columns = _table(metadata, f"probe_rows_{suffix}"), _table(
        metadata, f"probe_cols_{suffix}")
    metadata.create_all(engine)
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    options = dict(key_columns=("tenant_id", "actor_id", "day"), add=("big", "small", "ratio"),
                   bit_or=("mask",), least=("first_at",), replace=("label", "updated_at"))
    try:
        for seed in (1, 2, 1):  # the second 1 adds onto rows that exist
            columns = _batch(seed)
            names = list(columns)
            rows = [{"tenant_id": "acme", "updated_at": now,
                     **{c: (columns[c][i].item() if isinstance(columns[c], np.ndarray)
                            else columns[c][i]) for c in names}}
                    for i in range(len(columns["actor_id"]))]
            with Session(engine) as session:
                bulk.upsert_adding(session, by_rows, rows, **options)
                bulk.upsert_columns(session, by_columns, columns,
                                    constants={"tenant_id": "acme", "updated_at": now},
                                    **options)
                session.commit()
        with Session(engine) as session:
            want = session.execute(sa.select(by_rows).order_by(*by_rows.primary_key)).all()
            got = session.execute(sa.select(by_columns).order_by(*by_columns.primary_key)).all()
        assert len(want) > N // 2
        assert got == want
        assert {r.tenant_id for r in got} == {"acme"}
        assert any(r.big < 0 for r in got) and any(r.label is None for r in got)
    finally:
        metadata.drop_all(engine)


def test_column_upserts_refuse_ragged_columns(engine) -> None:
    metadata = sa.MetaData()
    table = _table(metadata, f"probe_ragged_{uuid.uuid4().hex[:8]}")
    with Session(engine) as session, pytest.raises(ValueError, match="as many values"):
        bulk.upsert_columns(session, table, {"actor_id": ["a", "b"], "day": [date(2026, 6, 17)]},
                            key_columns=("tenant_id", "actor_id", "day"))


def test_binary_copy_stores_what_text_copy_stores(engine) -> None:
    """``copy_tuples`` (binary COPY on PostgreSQL) against ``copy_rows`` (text COPY): every
    column type the events table uses, nulls, non-ASCII text and pre-serialised JSON."""
    from ubi.models.base import JSONType

    suffix = uuid.uuid4().hex[:8]
    metadata = sa.MetaData()

    def table(name: str) -> sa.Table:
        return sa.Table(
            f"{name}_{suffix}", metadata,
            sa.Column("id", sa.String(16), primary_key=True),
            sa.Column("day", sa.Date), sa.Column("at", UTCDateTime),
            sa.Column("small", sa.SmallInteger), sa.Column("big", sa.BigInteger),
            sa.Column("n", sa.Integer), sa.Column("x", sa.Float), sa.Column("flag", sa.Boolean),
            sa.Column("doc", JSONType), sa.Column("tags", JSONType))

    text_copy, binary_copy = table("copy_text"), table("copy_binary")
    metadata.create_all(engine)
    columns = ("id", "day", "at", "small", "big", "n", "x", "flag", "doc", "tags")
    rows: list[tuple[object, ...]] = [
        (f"r{i}", date(2026, 11, 1) + timedelta(days=i),
         datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=UTC) + timedelta(hours=i * 7),
         -840 + i, 2 ** 62 + i, -i, i / 3, i % 2 == 0,
         {"duration_ms": i * 1000, "name": "Zoë \t\\ \"quoted\"\n", "nested": {"k": [1, None]}},
         bulk.JsonText('["contains_PI"]') if i % 3 == 0 else [])
        for i in range(20)]
    rows.append(("nulls", None, None, None, None, None, None, None, {}, None))
    try:
        with Session(engine) as session:
            bulk.copy_rows(session, text_copy, [dict(zip(columns, r, strict=True))
                                                for r in rows])
            bulk.copy_tuples(session, binary_copy, columns, rows)
            session.commit()
            want = session.execute(sa.select(text_copy).order_by(text_copy.c.id)).all()
            got = session.execute(sa.select(binary_copy).order_by(binary_copy.c.id)).all()
        assert len(got) == len(rows) and got == want
        assert {r.id: r.tags for r in got}["r3"] == ["contains_PI"]
    finally:
        metadata.drop_all(engine)


def test_insert_new_keys_returns_only_the_keys_that_were_new(engine) -> None:
    """All new (PostgreSQL's plain INSERT), some taken (its fallback to ON CONFLICT, inside
    the same transaction) and a key twice in one call: each key stored once, and exactly the
    new ones returned."""
    metadata = sa.MetaData()
    table = sa.Table(
        f"probe_keys_{uuid.uuid4().hex[:8]}", metadata,
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("event_date", sa.Date, nullable=False))
    metadata.create_all(engine)
    day = date(2026, 11, 26)

    def insert(session: Session, ids: list[str]) -> set[tuple[object, ...]]:
        return bulk.insert_new_keys(session, table,
                                    {"event_id": ids, "event_date": [day] * len(ids)},
                                    key_columns=("tenant_id", "event_id"),
                                    constants={"tenant_id": "acme"})

    try:
        with Session(engine) as session:
            assert insert(session, ["a", "b", "c"]) == {("acme", "a"), ("acme", "b"),
                                                        ("acme", "c")}
            assert insert(session, ["c", "d", "a", "e"]) == {("acme", "d"), ("acme", "e")}
            assert insert(session, ["f", "f", "b"]) == {("acme", "f")}
            assert insert(session, ["a", "b"]) == set()
            session.commit()
        with Session(engine) as session:
            stored = session.execute(sa.select(table.c.event_id).order_by(table.c.event_id))
            assert stored.scalars().all() == ["a", "b", "c", "d", "e", "f"]
    finally:
        metadata.drop_all(engine)
