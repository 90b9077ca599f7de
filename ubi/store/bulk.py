"""Set-based writes: COPY on PostgreSQL, multi-row statements elsewhere, upserts that add.

No per-row ORM objects and no per-row round trips on the hot path.

On PostgreSQL the inserts and upserts pass one array per column, in binary, and unnest them
server-side (``INSERT ... SELECT ... FROM unnest(CAST(%(c0)b AS varchar[]), ...)``): the
statement text depends only on the table and the columns, never on the number of rows, so it
is built once per shape (and prepared by psycopg after a few executions) instead of compiling a
multi-row ``VALUES`` with one bind parameter per cell, which cost ~1 s per 1,000-event batch in
SQLAlchemy's compiler and psycopg's query conversion (``docs/benchmarks/ingest.md``). SQLite keeps
multi-row statements.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from ubi.models.session import dialect_insert, is_postgres

#: Rows per multi-row statement (stays under both PostgreSQL's and SQLite's parameter limits).
CHUNK = 2000
#: Rows per unnest statement on PostgreSQL (one parameter per column, whatever the rows).
ARRAY_CHUNK = 20_000
_UNIQUE_VIOLATION = "23505"


def chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


def _json_dumps(value: Any) -> bytes | str:
    """JSON for JSONB columns: orjson where it can (several times faster), the stdlib where it
    cannot (ints beyond 64 bits, non-string keys, datetimes, dataclasses, subclasses of
    builtins), so what is stored, or refused, stays what ``json.dumps`` gave."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(value)


# --- PostgreSQL: one array per column -------------------------------------------------------

_statement_cache: dict[tuple[Any, ...], tuple[str, list[Any], list[Any]]] = {}
_statement_lock = threading.Lock()
_TYPE_MODIFIER = re.compile(r"\([^)]*\)")


def _array_type(column: sa.Column[Any], dialect: Dialect) -> str:
    """The SQL array type a column's values are cast to: its base type without length or
    precision (an explicit cast to ``varchar(n)`` would truncate silently, while assigning an
    over-long ``varchar`` to the column fails as it should)."""
    base = _TYPE_MODIFIER.sub("", column.type.compile(dialect=dialect)).strip()
    return f"{base}[]"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _same_type(kind: type) -> Any:
    """Make a column's values one Python type (psycopg refuses lists of mixed types), the
    conversion PostgreSQL applied to single values before (``1`` → ``'1'`` for text)."""

    def coerce(value: Any) -> Any:
        return value if type(value) is kind else kind(value)

    return coerce


def _value_processor(column: sa.Column[Any], dialect: Dialect) -> Any:
    """The column type's bind processor, after a conversion to the column's Python type."""
    if isinstance(column.type, sa.JSON):
        # JSON values travel as psycopg Jsonb objects (a jsonb[] array in binary).
        return lambda value: Jsonb(value, dumps=_json_dumps)
    bind = column.type.bind_processor(dialect)
    kind: type | None = None
    if isinstance(column.type, sa.String):
        kind = str
    elif isinstance(column.type, sa.Float):
        kind = float
    elif isinstance(column.type, sa.Integer):
        kind = int
    if kind is None:
        return bind
    coerce = _same_type(kind)
    if bind is None:
        return coerce
    return lambda value: bind(coerce(value))


def _unnest_statement(table: sa.Table, columns: Sequence[str], dialect: Dialect, *,
                      conflict: str, constants: Sequence[str] = ()
                      ) -> tuple[str, list[Any], list[Any]]:
    """``INSERT INTO t AS t (cols) SELECT cols FROM unnest(...) ORDER BY ordinality`` plus
    ``conflict``, as driver SQL with binary array parameters (``%(cN)b``), and each column's
    value processor (or None); ``constants`` are columns with one value for every row, passed
    once (``%(kN)s``) with their processors (the third item). Cached per shape."""
    key = (table.name, id(table), tuple(columns), dialect.name, conflict, tuple(constants))
    with _statement_lock:
        hit = _statement_cache.get(key)
    if hit is not None:
        return hit
    cols = [table.c[c] for c in columns]
    fixed = [table.c[c] for c in constants]
    col_sql = ", ".join(_quote(c) for c in (*constants, *columns))
    # %(cN)b: psycopg sends the arrays in binary, several times cheaper than text arrays.
    arrays = ", ".join(f"CAST(%(c{i})b AS {_array_type(col, dialect)})"
                       for i, col in enumerate(cols))
    aliases = ", ".join(f"u{i}" for i in range(len(cols)))
    selected = ", ".join([*(f"CAST(%(k{j})s AS {_array_type(col, dialect)[:-2]})"
                            for j, col in enumerate(fixed)), aliases])
    sql = (f"INSERT INTO {_quote(table.name)} AS t ({col_sql}) "
           f"SELECT {selected} FROM unnest({arrays}) WITH ORDINALITY AS u({aliases}, n) "
           f"ORDER BY n {conflict}")
    built = (sql, [_value_processor(col, dialect) for col in cols],
             [_value_processor(col, dialect) for col in fixed])
    with _statement_lock:
        _statement_cache[key] = built
    return built


# Numeric columns held in numpy arrays skip psycopg's per-value array dumping (a Python loop,
# ~0.5 us a value): they are packed into PostgreSQL's binary array format in one numpy pass.

class _PackedInt8Array(bytes):
    """A one-dimensional ``int8[]`` in PostgreSQL's binary wire format."""


class _PackedFloat8Array(bytes):
    """A one-dimensional ``float8[]`` in PostgreSQL's binary wire format."""


class _PackedInt8ArrayDumper(Dumper):
    format = Format.BINARY
    oid = postgres.types["int8"].array_oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _PackedFloat8ArrayDumper(_PackedInt8ArrayDumper):
    oid = postgres.types["float8"].array_oid


def _packed_array(values: np.ndarray) -> bytes:
    """``values`` (integers or floats, no nulls) as a binary ``int8[]`` / ``float8[]``."""
    kind: type[bytes]
    if values.dtype.kind == "f":
        kind, elem, code = _PackedFloat8Array, postgres.types["float8"].oid, ">f8"
    else:
        kind, elem, code = _PackedInt8Array, postgres.types["int8"].oid, ">i8"
    n = len(values)
    if n == 0:
        return kind(struct.pack(">iiI", 0, 0, elem))
    body = np.empty(n, dtype=[("size", ">i4"), ("value", code)])
    body["size"] = 8
    body["value"] = values
    return kind(struct.pack(">iiIii", 1, 0, elem, n, 1) + body.tobytes())


def _register_packed_dumpers(session: Session) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None  # the session's live connection always has its driver connection
    adapters = raw.adapters
    adapters.register_dumper(_PackedInt8Array, _PackedInt8ArrayDumper)
    adapters.register_dumper(_PackedFloat8Array, _PackedFloat8ArrayDumper)


def _column_arrays(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   processors: Sequence[Any]) -> dict[str, list[Any]]:
    """One list per column, values passed through the column's value processor."""
    params: dict[str, list[Any]] = {}
    for i, (name, proc) in enumerate(zip(columns, processors, strict=True)):
        values = [row[name] for row in rows]
        if proc is not None:
            values = [None if v is None else proc(v) for v in values]
        params[f"c{i}"] = values
    return params


def _execute_arrays(session: Session, sql: str, params: dict[str, list[Any]]) -> Any:
    """Run driver SQL on the session's connection (its transaction; SQLAlchemy still wraps
    driver errors, so retry policies keyed on ``sqlalchemy.exc`` keep working)."""
    return session.connection().exec_driver_sql(sql, params)


def _check_same_columns(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    wanted = set(columns)
    for row in rows:
        if row.keys() != wanted:
            raise ValueError("every row of a bulk write must have the same columns")


def _pg_conflict_update(table: sa.Table, key_columns: Sequence[str], *, add: Sequence[str],
                        bit_or: Sequence[str], least: Sequence[str], greatest: Sequence[str],
                        replace: Sequence[str]) -> str:
    sets = []
    for c in add:
        q = _quote(c)
        sets.append(f"{q} = t.{q} + EXCLUDED.{q}")
    for c in bit_or:
        q = _quote(c)
        sets.append(f"{q} = t.{q} | EXCLUDED.{q}")
    for fn, names in (("LEAST", least), ("GREATEST", greatest)):
        for c in names:
            q = _quote(c)
            sets.append(f"{q} = CASE WHEN t.{q} IS NULL THEN EXCLUDED.{q} "
                        f"ELSE {fn}(t.{q}, EXCLUDED.{q}) END")
    for c in replace:
        q = _quote(c)
        sets.append(f"{q} = EXCLUDED.{q}")
    unknown = [c for c in (*add, *bit_or, *least, *greatest, *replace) if c not in table.c]
    if unknown:
        raise KeyError(f"no column(s) {unknown} in table {table.name}")
    target = ", ".join(_quote(c) for c in key_columns)
    if not sets:
        return f"ON CONFLICT ({target}) DO NOTHING"
    return f"ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)}"


# --- the operations --------------------------------------------------------------------------

def insert_new_keys(session: Session, table: sa.Table, columns: Mapping[str, Sequence[Any]], *,
                    key_columns: Sequence[str], constants: Mapping[str, Any] | None = None
                    ) -> set[tuple[Any, ...]]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING key`` of rows held by column (as
    ``upsert_columns`` takes them): the keys that were new."""
    fixed = dict(constants or {})
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if n == 0:
        return set()
    if is_postgres(session):
        # New keys are the rule (the API drops known ones before queueing), so first a plain
        # INSERT in a savepoint: about a fifth cheaper for the server than ON CONFLICT's
        # speculative insertion. Any key already taken undoes it, and ON CONFLICT sorts out
        # which keys were new.
        try:
            with session.begin_nested():
                _write_columns(session, table, columns, fixed, "", range(n))
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
        else:
            parts = [[fixed[c]] * n if c in fixed else _plain(columns[c]) for c in key_columns]
            return set(zip(*parts, strict=True))
        target = ", ".join(_quote(c) for c in key_columns)
        conflict = (f"ON CONFLICT ({target}) DO NOTHING RETURNING "
                    + ", ".join(f"t.{_quote(c)}" for c in key_columns))
        return {tuple(r) for r in _write_columns(session, table, columns, fixed, conflict,
                                                 range(n))}
    plain = {c: _plain(columns[c]) for c in names}
    rows = [{**fixed, **{c: plain[c][i] for c in names}} for i in range(n)]
    new: set[tuple[Any, ...]] = set()
    returning = [table.c[c] for c in key_columns]
    for part in chunks(rows):
        stmt = dialect_insert(session, table).values(list(part)).on_conflict_do_nothing(
            index_elements=list(key_columns)).returning(*returning)
        new.update(tuple(r) for r in session.execute(stmt))
    return new


class JsonText(str):
    """JSON already serialised (e.g. one document shared by many rows): written as is."""


def _decode_json_text(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: json.loads(v) if isinstance(v, JsonText) else v for k, v in r.items()}
            for r in rows]


def _binary_copy_type(column: sa.Column[Any]) -> str:
    """The PostgreSQL type a column's values are sent as in a binary COPY (which, unlike
    text, carries each value in its exact type's wire format)."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "jsonb"
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    for sa_type, name in ((sa.JSON, "jsonb"), (sa.SmallInteger, "int2"),
                          (sa.BigInteger, "int8"), (sa.Integer, "int4"), (sa.Float, "float8"),
                          (sa.Boolean, "bool"), (sa.String, "text"), (sa.Date, "date")):
        if isinstance(kind, sa_type):
            return name
    if isinstance(kind, sa.DateTime):
        return "timestamptz" if kind.timezone else "timestamp"
    raise TypeError(f"no binary COPY type for column {column.name} ({column.type})")


def _copy_in(session: Session, table: sa.Table, target: str, columns: Sequence[str],
             rows: Iterable[Any], *, as_tuples: bool = False, binary: bool = False) -> None:
    """``COPY target (columns) FROM STDIN`` of dict rows (or of value sequences in the order
    of ``columns``); JSON columns as jsonb. ``binary`` sends every value in its column type's
    binary format: about 2.5 times less client CPU than text, and nothing for the server to
    parse (timestamps are the dearest)."""
    json_pos = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.JSON)]
    raw = session.connection().connection.driver_connection
    assert raw is not None  # the session's live connection always has its driver connection
    cols_sql = ", ".join(_quote(c) for c in columns)
    fmt = " (FORMAT BINARY)" if binary else ""
    with raw.cursor() as cur, cur.copy(
            f"COPY {_quote(target)} ({cols_sql}) FROM STDIN{fmt}") as copy:
        if binary:
            copy.set_types([_binary_copy_type(table.c[c]) for c in columns])
        for row in rows:
            values = list(row) if as_tuples else [row[c] for c in columns]
            for i in json_pos:
                if not isinstance(values[i], JsonText):
                    values[i] = Jsonb(values[i], dumps=_json_dumps)
                elif binary:  # already JSON: sent as it is
                    values[i] = Jsonb(values[i], dumps=str)
            copy.write_row(values)


def copy_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Append rows: ``COPY`` on PostgreSQL, multi-row INSERTs elsewhere."""
    if not rows:
        return 0
    columns = list(rows[0].keys())
    if not is_postgres(session):
        for part in chunks(_decode_json_text(rows)):
            session.execute(sa.insert(table), list(part))
        return len(rows)
    _copy_in(session, table, table.name, columns, rows)
    return len(rows)


def copy_tuples(session: Session, table: sa.Table, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> int:
    """``copy_rows`` for rows held as value sequences in the order of ``columns`` (no dict
    per row on the hot path), in binary: each value must be of its column's Python type."""
    if not rows:
        return 0
    if not is_postgres(session):
        return copy_rows(session, table, [dict(zip(columns, r, strict=True)) for r in rows])
    _copy_in(session, table, table.name, columns, rows, as_tuples=True, binary=True)
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
    if is_postgres(session):
        columns = list(ordered[0].keys())
        _check_same_columns(ordered, columns)
        conflict = _pg_conflict_update(table, key_columns, add=add, bit_or=bit_or, least=least,
                                       greatest=greatest, replace=replace)
        stmt, processors, _ = _unnest_statement(table, columns, session.get_bind().dialect,
                                                conflict=conflict)
        for part in chunks(ordered, ARRAY_CHUNK):
            _execute_arrays(session, stmt, _column_arrays(part, columns, processors))
        return
    # Elsewhere (SQLite): one statement compiled once, executed for every row by the
    # driver's executemany; a multi-row VALUES would be recompiled for each chunk.
    stmt = dialect_insert(session, table)
    ex = stmt.excluded
    sets: dict[str, Any] = {}
    for c in add:
        sets[c] = table.c[c] + ex[c]
    for c in bit_or:
        sets[c] = table.c[c].op("|")(ex[c])
    for c in least:
        sets[c] = sa.case((table.c[c].is_(None), ex[c]), else_=sa.func.min(table.c[c], ex[c]))
    for c in greatest:
        sets[c] = sa.case((table.c[c].is_(None), ex[c]),
                          else_=sa.func.max(table.c[c], ex[c]))
    for c in replace:
        sets[c] = ex[c]
    stmt = stmt.on_conflict_do_update(index_elements=list(key_columns), set_=sets)
    for part in chunks(ordered):
        session.execute(stmt, list(part))


def upsert_columns(session: Session, table: sa.Table, columns: Mapping[str, Any], *,
                   constants: Mapping[str, Any] | None = None, key_columns: Sequence[str],
                   add: Sequence[str] = (), bit_or: Sequence[str] = (),
                   least: Sequence[str] = (), greatest: Sequence[str] = (),
                   replace: Sequence[str] = ()) -> None:
    """``upsert_adding`` for data held by column: ``columns`` maps a column to its values
    (lists, or numpy arrays of numbers, which are packed without a per-value step) and
    ``constants`` maps a column to the one value every row has (a tenant, a timestamp).

    Rows are written in key order, as ``upsert_adding`` writes them.
    """
    fixed = dict(constants or {})
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if any(len(columns[c]) != n for c in names):
        raise ValueError("every column of a bulk write must have as many values")
    if n == 0:
        return
    order = _key_order([_plain(columns[c]) for c in key_columns if c in columns], n)
    if not is_postgres(session):
        plain = {c: _plain(columns[c]) for c in names}
        upsert_adding(session, table, [{**fixed, **{c: plain[c][i] for c in names}}
                                       for i in order],
                      key_columns=key_columns, add=add, bit_or=bit_or, least=least,
                      greatest=greatest, replace=replace)
        return
    conflict = _pg_conflict_update(table, key_columns, add=add, bit_or=bit_or, least=least,
                                   greatest=greatest, replace=replace)
    _write_columns(session, table, columns, fixed, conflict, order)


def _write_columns(session: Session, table: sa.Table, columns: Mapping[str, Any],
                   fixed: Mapping[str, Any], conflict: str, order: Sequence[int]) -> list[Any]:
    """PostgreSQL: one unnest ``INSERT`` per ``ARRAY_CHUNK`` rows taken in ``order``; the
    rows the statement returns, if it returns any."""
    names = list(columns)
    stmt, processors, fixed_processors = _unnest_statement(
        table, names, session.get_bind().dialect, conflict=conflict, constants=list(fixed))
    _register_packed_dumpers(session)
    params: dict[str, Any] = {}
    for j, (value, proc) in enumerate(zip(fixed.values(), fixed_processors, strict=True)):
        params[f"k{j}"] = value if value is None or proc is None else proc(value)
    positions = np.asarray(order, dtype=np.int64)
    returned: list[Any] = []
    for start in range(0, len(positions), ARRAY_CHUNK):
        part = positions[start:start + ARRAY_CHUNK]
        for i, (name, proc) in enumerate(zip(names, processors, strict=True)):
            values = columns[name]
            if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
                params[f"c{i}"] = _packed_array(values[part])
                continue
            picked = [values[p] for p in part.tolist()]
            if proc is not None:
                picked = [None if v is None else proc(v) for v in picked]
            params[f"c{i}"] = picked
        result = _execute_arrays(session, stmt, params)
        if result.returns_rows:
            returned.extend(result.all())
    return returned


def _key_order(key_values: Sequence[list[Any]], n: int) -> list[int]:
    """Row positions in key order, comparing the keys' own values (no string per value);
    keys of mixed types, which only their strings can order, by their strings. Concurrent
    ``upsert_columns`` of a table thus lock its rows in one order."""
    keys = list(zip(*key_values, strict=True)) if key_values else [()] * n
    try:
        return sorted(range(n), key=keys.__getitem__)
    except TypeError:
        text = [tuple(str(v) for v in k) for k in keys]
        return sorted(range(n), key=text.__getitem__)


def _plain(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def upsert_replacing(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]], *,
                     key_columns: Sequence[str], replace: Sequence[str] = (),
                     changed: Sequence[str] = (), fill: Sequence[str] = (),
                     fill_stored: Sequence[str] = ()) -> int:
    """Large upserts that overwrite ``replace`` columns by key (with no column to set,
    existing rows are left as they are: only new keys are inserted). A ``fill`` column takes
    the written value unless it is null (``COALESCE(new, stored)``); a ``fill_stored`` column
    keeps a stored value and takes the written one only where it had none
    (``COALESCE(stored, new)``): merges done by the statement itself, so a concurrent writer's
    update in between is never overwritten with what this one read before.

    On PostgreSQL the rows are COPYed into a temporary table (psycopg's C copy path, several
    times faster than binding arrays for 10^5-10^6 rows) and merged with one
    ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``; elsewhere one ``INSERT ... ON CONFLICT``
    statement executed for every row. With ``changed``, an existing row is only rewritten when
    one of those columns would change (a recomputation that finds the same values writes
    nothing).
    """
    if not rows:
        return 0
    unknown = [c for c in (*replace, *fill, *fill_stored, *changed) if c not in table.c]
    if unknown:
        raise KeyError(f"no column(s) {unknown} in table {table.name}")
    ordered = sorted(rows, key=lambda r: tuple(str(r[c]) for c in key_columns))
    if not is_postgres(session):
        stmt = dialect_insert(session, table)
        ex = stmt.excluded
        new: dict[str, Any] = {c: ex[c] for c in replace}
        new.update({c: sa.func.coalesce(ex[c], table.c[c]) for c in fill})
        new.update({c: sa.func.coalesce(table.c[c], ex[c]) for c in fill_stored})
        if not new:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(key_columns))
        else:
            where = sa.or_(*(table.c[c].is_distinct_from(new[c]) for c in changed)
                           ) if changed else None
            stmt = stmt.on_conflict_do_update(index_elements=list(key_columns), set_=new,
                                              where=where)
        for part in chunks(_decode_json_text(ordered)):
            session.execute(stmt, list(part))
        return len(rows)
    columns = list(rows[0].keys())
    _check_same_columns(rows, columns)
    temp = f"tmp_{table.name}_merge"
    conn = session.connection()
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {_quote(temp)} "
                         f"(LIKE {_quote(table.name)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"TRUNCATE {_quote(temp)}")
    _copy_in(session, table, temp, columns, ordered)
    col_sql = ", ".join(_quote(c) for c in columns)
    stored = _quote(table.name)
    exprs = {c: f"EXCLUDED.{_quote(c)}" for c in replace}
    exprs.update({c: f"COALESCE(EXCLUDED.{_quote(c)}, {stored}.{_quote(c)})" for c in fill})
    exprs.update({c: f"COALESCE({stored}.{_quote(c)}, EXCLUDED.{_quote(c)})"
                  for c in fill_stored})
    sets = ", ".join(f"{_quote(c)} = {e}" for c, e in exprs.items())
    target = ", ".join(_quote(c) for c in key_columns)
    condition = ""
    if changed:
        condition = " WHERE " + " OR ".join(
            f"{stored}.{_quote(c)} IS DISTINCT FROM {exprs[c]}" for c in changed)
    action = f"DO UPDATE SET {sets}{condition}" if exprs else "DO NOTHING"
    conn.exec_driver_sql(
        f"INSERT INTO {stored} ({col_sql}) SELECT {col_sql} FROM {_quote(temp)} "
        f"ON CONFLICT ({target}) {action}")
    conn.exec_driver_sql(f"TRUNCATE {_quote(temp)}")
    return len(rows)
