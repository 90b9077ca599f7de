"""Reading fixed-width rows from PostgreSQL into numpy: one value per group, not one per row.

The server packs each group's rows into one ``bytea`` (``string_agg`` of the types' send
functions: big-endian int4 and float8, no length words) and the client views the
concatenation as a numpy record array; each group's key comes beside its value (the subject's
id: no join to number the subjects in the query), and a text column can come along as an
array in the same row order (``labels``: numbered by the client, where a ``dense_rank`` sorts
every row on the server). A binary ``COPY ... TO STDOUT`` streams the same values but hands
the client one message per row, and psycopg's per-row loop cost about as much CPU as the
query itself (40,000 rows per features run: about 30 ms of Python, 2 ms packed). Grouping (by
the subject, say) bounds each value far below ``bytea``'s 1 GB whatever the range read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.orm import Session

#: The send function of each field kind (numpy's big-endian type of the wire format).
SEND: dict[str, str] = {">i4": "int4send", ">f8": "float8send"}


def record_type(fields: Sequence[tuple[str, str]],
                repeated: tuple[str, str, int] | None = None) -> np.dtype[np.void]:
    """The numpy type of one packed row: ``fields`` (name, kind), then ``repeated`` (name,
    kind, n): n fields of one kind viewed together as ``records[name]``, [R, n]."""
    dtype: list[Any] = list(fields)
    if repeated is not None:
        name, kind, n = repeated
        dtype.append((name, kind, (n,)))
    return np.dtype(dtype)


class Packed(NamedTuple):
    """A packed read: the groups' keys, each row's group (int64 indexes into ``keys``), the
    rows (``record_type``) and, when asked for, each row's label."""

    keys: list[Any]
    group: np.ndarray
    rows: np.ndarray
    labels: list[str]


def read(session: Session, query: str, params: Mapping[str, Any],
         fields: Sequence[tuple[str, str]], repeated: tuple[str, str, int] | None = None, *,
         group_by: str, labels: str | None = None) -> Packed:
    """The rows of ``query`` (driver SQL, psycopg's ``%(name)s`` parameters) grouped by its
    column ``group_by``, in no order within a group. ``query`` names its other columns as
    ``fields``, then ``repeated``'s as ``name0`` .. ``name{n-1}``; each NOT NULL and of its
    kind (int4 ``>i4``, float8 ``>f8``); ``labels``: a text column read too, row by row."""
    names = [(n, kind) for n, kind in fields]
    if repeated is not None:
        names += [(f"{repeated[0]}{i}", repeated[1]) for i in range(repeated[2])]
    values = " || ".join(f'{SEND[kind]}(q."{n}")' for n, kind in names)
    # Both aggregates of a group take its rows in one order (one pass over the input).
    label_sql = f', array_agg(q."{labels}")' if labels else ""
    raw = session.connection().connection.driver_connection
    assert raw is not None  # the session's live connection always has its driver connection
    with raw.cursor(binary=True) as cur:
        # Not prepared: a generic plan would search the parameter arrays row by row, where
        # a plan for the values at hand hashes them.
        cur.execute(f'SELECT q."{group_by}", string_agg({values}, \'\'::bytea){label_sql} '
                    f'FROM ({query}) q GROUP BY q."{group_by}"', params, prepare=False)
        groups = cur.fetchall()
    record = record_type(fields, repeated)
    sizes = np.array([len(g[1]) // record.itemsize for g in groups], dtype=np.int64)
    rows = np.frombuffer(b"".join(bytes(g[1]) for g in groups), dtype=record)
    return Packed([g[0] for g in groups], np.repeat(np.arange(len(groups)), sizes), rows,
                  [x for g in groups for x in g[2]] if labels else [])
