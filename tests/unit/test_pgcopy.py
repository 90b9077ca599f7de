"""``ubi.store.pgcopy``: the binary COPY format without a server (the integration tests
``test_baselines_copy`` and the pipeline's send and read it through PostgreSQL)."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime

import numpy as np

from ubi.store import pgcopy


def _tuples(data: bytes) -> list[list[bytes | None]]:
    """Parse binary COPY tuples (no header or trailer) the slow, obvious way."""
    rows: list[list[bytes | None]] = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from(">h", data, at)
        at += 2
        row: list[bytes | None] = []
        for _ in range(n):
            (size,) = struct.unpack_from(">i", data, at)
            at += 4
            if size < 0:
                row.append(None)
            else:
                row.append(data[at:at + size])
                at += size
        rows.append(row)
    return rows


def test_encode_tuples_writes_each_field_in_its_binary_format() -> None:
    names = ["", "bob", "ünï", "bob"]
    score = np.array([1.5, np.nan, -0.25, np.nan, 3.0])
    count = np.array([7, 8, 9], dtype=np.int64)
    fields: list[pgcopy.Field] = [
        pgcopy.Text(names, np.array([1, 0, 2, 3, 1])),
        pgcopy.text_value("acme"), None,
        pgcopy.Column(">f8", score, nullable=True),
        pgcopy.Column(">i4", count, index=np.array([0, 1, 2, 0, 1])),
        pgcopy.date_value(date(2000, 1, 3)),
        pgcopy.timestamptz_value(datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC)),
        pgcopy.jsonb_value('{"a": 1}')]
    blocks = list(pgcopy.encode_tuples(fields, 5))
    assert sum(n for n, _ in blocks) == 5
    rows = _tuples(b"".join(b for _, b in blocks))
    # Blocks by layout (text length, then NULL after a value), rows in order within each:
    # rows 1 (0, NULL), 0 and 4 (3, value), 3 (3, NULL), 2 (5, value).
    assert [r[0] for r in rows] == [b"", b"bob", b"bob", b"bob", "ünï".encode()]
    assert [r[3] for r in rows] == [None, struct.pack(">d", 1.5), struct.pack(">d", 3.0),
                                    None, struct.pack(">d", -0.25)]
    assert [r[4] for r in rows] == [struct.pack(">i", v) for v in (8, 7, 8, 7, 9)]
    for r in rows:
        assert r[1] == b"acme" and r[2] is None
        assert r[5] == struct.pack(">i", 2)
        assert r[6] == struct.pack(">q", 1_000_005)
        assert r[7] == b'\x01{"a": 1}'
    assert list(pgcopy.encode_tuples(fields, 0)) == []


def test_layouts_order_the_same_whether_one_integer_or_many_digits() -> None:
    rng = np.random.default_rng(3)
    digits = [(rng.integers(0, b, 500), b) for b in (7, 2, 300, 2)]
    small = pgcopy._layouts(digits, 500)
    large = pgcopy._layouts([*digits, (np.zeros(500, dtype=np.int64), 2**62)], 500)
    assert np.array_equal(small, large)
