"""Set-based writes: COPY on PostgreSQL, multi-row statements elsewhere, upserts that add.

No per-row ORM objects and no per-row round trips on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from ubi.models.session import dialect_insert, is_postgres

#: Rows per multi-row statement (stays under both PostgreSQL's and SQLite's parameter limits).
CHUNK = 2000


def chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def insert_new_keys(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]],
                    key_columns: Sequence[str]) -> set[tuple[Any, ...]]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING key``: the keys that were new."""
    new: set[tuple[Any, ...]] = set()
    returning = [table.c[c] for c in key_columns]
    for part in chunks(rows):
        stmt = dialect_insert(session, table).values(list(part)).on_conflict_do_nothing(
            index_elements=list(key_columns)).returning(*returning)
        new.update(tuple(r) for r in session.execute(stmt))
    return new


def copy_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Append rows: ``COPY`` on PostgreSQL, multi-row INSERTs elsewhere."""
    if not rows:
        return 0
    columns = list(rows[0].keys())
    if not is_postgres(session):
        for part in chunks(rows):
            session.execute(sa.insert(table), list(part))
        return len(rows)
    json_cols = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    raw = session.connection().connection.driver_connection
    cols_sql = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols_sql}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([Jsonb(row[c]) if c in json_cols else row[c] for c in columns])
    return len(rows)


def upsert_adding(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]], *,
                  key_columns: Sequence[str], add: Sequence[str] = (), bit_or: Sequence[str] = (),
                  least: Sequence[str] = (), greatest: Sequence[str] = (),
                  replace: Sequence[str] = ()) -> None:
    """Upsert where existing rows accumulate: ``col = col + excluded.col`` etc.

    Rows are written in key order so concurrent writers lock rows in the same order and cannot
    deadlock each other.
    """
    if not rows:
        return
    ordered = sorted(rows, key=lambda r: tuple(str(r[c]) for c in key_columns))
    for part in chunks(ordered):
        stmt = dialect_insert(session, table).values(list(part))
        ex = stmt.excluded
        sets: dict[str, Any] = {}
        for c in add:
            sets[c] = table.c[c] + ex[c]
        for c in bit_or:
            sets[c] = table.c[c].op("|")(ex[c])
        least_fn = sa.func.least if is_postgres(session) else sa.func.min
        greatest_fn = sa.func.greatest if is_postgres(session) else sa.func.max
        for c in least:
            sets[c] = sa.case((table.c[c].is_(None), ex[c]), else_=least_fn(table.c[c], ex[c]))
        for c in greatest:
            sets[c] = sa.case((table.c[c].is_(None), ex[c]),
                              else_=greatest_fn(table.c[c], ex[c]))
        for c in replace:
            sets[c] = ex[c]
        session.execute(stmt.on_conflict_do_update(index_elements=list(key_columns), set_=sets))
