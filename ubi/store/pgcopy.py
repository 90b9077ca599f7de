"""PostgreSQL's binary COPY format from numpy columns: UBI's one encoder.

The format (PostgreSQL's ``COPY`` reference, "Binary Format"): a header (the signature, 32-bit
flags, 32-bit header-extension length), then each tuple as a 16-bit field count and, per
field, a 32-bit byte length (-1 for NULL) and the value in its type's binary format, then a
16-bit -1. Every integer is big-endian.

- Writing (``encode_tuples``, ``copy_in``), for writes of 10^5-10^6 rows held as numpy
  columns: rows whose fields have the same byte lengths (variable-length text, NULLs) share
  one layout, and a block of such rows is one numpy structured array whose bytes are the
  tuples themselves: values shared by every row are broadcast, the others assigned column by
  column. No Python object per row or cell; floats travel as the exact doubles computed.
- Reading is ``store.packed`` (each group's rows packed by the server into one value: a
  COPY out hands psycopg one message per row).

Rows held as Python values go through psycopg's own COPY instead (``bulk.copy_rows``,
``bulk.copy_tuples``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

#: The header: the signature, flags 0, no header extension.
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
#: The trailer: a field count of -1.
TRAILER = b"\xff\xff"
_NULL = -1
_PG_EPOCH_DAY = date(2000, 1, 1)
_PG_EPOCH_UNIX_S = 946_684_800  # 2000-01-01T00:00:00Z


def _int4(value: int) -> bytes:
    return int(value).to_bytes(4, "big", signed=True)


# --- one value for every row: its binary format (``encode_tuples`` adds the length word) -----

def text_value(value: str) -> bytes:
    """``text`` / ``varchar``: UTF-8."""
    return value.encode()


def jsonb_value(document: str) -> bytes:
    """``jsonb``: version 1, then the JSON text."""
    return b"\x01" + document.encode()


def date_value(day: date) -> bytes:
    """``date``: days since 2000-01-01."""
    return _int4((day - _PG_EPOCH_DAY).days)


def timestamptz_value(ts: datetime) -> bytes:
    """``timestamptz``: microseconds since 2000-01-01 UTC (a naive ``ts`` is UTC)."""
    epoch = (datetime(2000, 1, 1) if ts.tzinfo is None
             else datetime.fromtimestamp(_PG_EPOCH_UNIX_S, ts.tzinfo))
    delta = ts - epoch
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros.to_bytes(8, "big", signed=True)


# --- fields that vary by row ------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A fixed-width field of every row: ``kind`` is its numpy type in the wire format
    (``">i4"`` int4, ``">i8"`` int8, ``">f8"`` float8, ``"S36"`` a text of exactly 36 bytes);
    row i's value is ``values[i]``, or ``values[index[i]]`` with ``index``. ``nullable``: a
    NaN is NULL (float columns)."""

    kind: str
    values: np.ndarray
    index: np.ndarray | None = None
    nullable: bool = False

    def per_row(self, rows: Any) -> np.ndarray:
        return self.values[rows if self.index is None else self.index[rows]]


@dataclass(frozen=True)
class Text:
    """A text field of every row, of any length: row i's value is ``values[index[i]]`` (each
    distinct value is encoded once)."""

    values: Sequence[str]
    index: np.ndarray


#: A field of ``encode_tuples``: ``bytes`` is one value (in its binary format) for every
#: row, ``None`` NULL in every row.
Field = bytes | None | Column | Text


def encode_tuples(fields: Sequence[Field], n_rows: int) -> Iterator[tuple[int, bytes]]:
    """``n_rows`` rows of ``fields`` (in the order of the COPY's columns) as binary COPY
    tuples, without header or trailer, in blocks of (row count, bytes).

    Rows whose variable-length fields (``Text`` lengths, NULLs of ``nullable`` columns) have
    the same byte lengths share a record layout, and each block is the rows of one layout,
    in their order; blocks come in the order of their layouts (the byte lengths, field by
    field, a NULL after a value).
    """
    if n_rows == 0:
        return
    encoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # Text field -> (values, sizes)
    digits: list[tuple[np.ndarray, int]] = []  # per varying field: each row's digit, base
    for f, field in enumerate(fields):
        if isinstance(field, Text):
            utf8 = [v.encode() for v in field.values]
            sizes = np.array([len(b) for b in utf8], dtype=np.int64)
            encoded[f] = (np.array(utf8, dtype=bytes), sizes)
            digits.append((sizes[field.index], int(sizes.max()) + 1))
        elif isinstance(field, Column) and field.nullable:
            every = field.values if field.index is None else field.values[field.index]
            digits.append((np.isnan(every).astype(np.int64), 2))
    inverse = _layouts(digits, n_rows)
    counts = np.bincount(inverse)
    order = np.argsort(inverse, kind="stable")  # keeps the rows' order within a layout
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for g in range(len(counts)):
        rows = order[bounds[g]:bounds[g + 1]]
        first = int(rows[0])
        # The layout's tuple as bytes every row shares and per-row (numpy type, values).
        parts: list[bytes | tuple[str, np.ndarray]] = [len(fields).to_bytes(2, "big")]
        for f, field in enumerate(fields):
            if field is None:
                parts.append(_int4(_NULL))
            elif isinstance(field, bytes):
                parts.append(_int4(len(field)) + field)
            elif isinstance(field, Text):
                blobs, sizes = encoded[f]
                size = int(sizes[field.index[first]])
                parts.append(_int4(size))
                if size:  # an empty text is its length word alone
                    parts.append((f"S{size}", blobs[field.index[rows]]))
            elif field.nullable and np.isnan(field.per_row(first)):
                parts.append(_int4(_NULL))
            else:
                parts += [_int4(np.dtype(field.kind).itemsize), (field.kind, field.per_row(rows))]
        yield len(rows), _records(parts, len(rows)).tobytes()


def _records(parts: list[bytes | tuple[str, np.ndarray]], n_rows: int) -> np.ndarray:
    """Rows of one layout as a numpy structured array (its bytes are the tuples): each run of
    bytes every row shares is one opaque ('V') field, broadcast; each per-row part a field of
    its numpy type, assigned at once."""
    merged: list[bytes | tuple[str, np.ndarray]] = []
    for part in parts:
        last = merged[-1] if merged else None
        if isinstance(part, bytes) and isinstance(last, bytes):
            merged[-1] = last + part
        else:
            merged.append(part)
    records = np.empty(n_rows, dtype=[(f"p{i}", f"V{len(p)}" if isinstance(p, bytes) else p[0])
                                      for i, p in enumerate(merged)])
    for i, part in enumerate(merged):
        records[f"p{i}"] = np.void(part) if isinstance(part, bytes) else part[1]
    return records


def _layouts(digits: list[tuple[np.ndarray, int]], n_rows: int) -> np.ndarray:
    """Each row's layout, numbered in the order of the rows' digits (lexicographic)."""
    if not digits:
        return np.zeros(n_rows, dtype=np.int64)
    span = 1
    for _, base in digits:
        span *= base
    if span < 2**62:  # one integer per row (mixed radix, every digit below its base)
        key = np.zeros(n_rows, dtype=np.int64)
        for digit, base in digits:
            key = key * base + digit
        inverse = np.unique(key, return_inverse=True)[1]
    else:
        inverse = np.unique(np.stack([d for d, _ in digits], axis=1), axis=0,
                            return_inverse=True)[1]
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def copy_in(session: Session, table: sa.Table, columns: Sequence[str],
            blocks: Iterable[tuple[int, bytes]]) -> int:
    """``COPY table (columns) FROM STDIN (FORMAT BINARY)`` of ``encode_tuples`` blocks, on
    the session's connection (inside its transaction), each sent as it comes (the server
    stores and indexes a block while the next is encoded); the number of rows written."""
    raw = session.connection().connection.driver_connection
    assert raw is not None  # the session's psycopg connection, inside its transaction
    name = session.get_bind().dialect.identifier_preparer.format_table(table)
    cols = ", ".join(f'"{c}"' for c in columns)
    written = 0
    with raw.cursor() as cur, cur.copy(
            f"COPY {name} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(HEADER)
        for n_rows, block in blocks:
            copy.write(block)
            written += n_rows
        copy.write(TRAILER)
    return written
