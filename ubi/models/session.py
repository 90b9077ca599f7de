"""Engine and session factory for the configured store (PostgreSQL, or embedded SQLite)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ubi.settings import Settings, get_settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets the demo's web thread read while a task writes; busy_timeout waits for the lock.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _json_loads(text: str | bytes) -> Any:
    """JSON columns as read: orjson (several times faster than ``json`` on a page of signals'
    evidence), falling back to ``json`` for what orjson refuses (integers beyond 64 bits,
    NaN that SQLite's JSON may hold)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """A new engine for ``url`` with the project's connection policy."""
    kwargs.setdefault("json_deserializer", _json_loads)
    if url.startswith("sqlite"):
        from pathlib import Path

        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False,
                                                     "timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", 10)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 5)
    connect_args.setdefault("application_name", "ubi")
    # UTC sessions whatever the server's default: SQL that derives days from timestamps means
    # UTC days (SPEC §5.1), and psycopg then converts timestamptz with its fixed UTC instead of
    # a zoneinfo per value (a server's "Etc/UTC" cost 8 us a timestamp). Options the URL
    # carries are kept, after ours (connect_args would otherwise replace them).
    given = sa.engine.make_url(url).query.get("options")
    given = given if isinstance(given, str) else " ".join(given or ())
    connect_args.setdefault("options", f"-c timezone=UTC {given}".strip())
    return sa.create_engine(url, connect_args=connect_args, **kwargs)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the settings' database URL."""
    settings = settings or get_settings()
    url = settings.database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_db_engine(
                url, **({} if url.startswith("sqlite") else {
                    "pool_size": settings.db_pool_size,
                    "max_overflow": settings.db_max_overflow}))
            from ubi.observability import tracing

            tracing.trace_engine(engine)  # a no-op with tracing off
            _factories[url] = sessionmaker(bind=engine, expire_on_commit=False)
        return engine


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    settings = settings or get_settings()
    get_engine(settings)
    return _factories[settings.database_url]


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, always close."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session for a read: autocommit, so no BEGIN and COMMIT round trips around its
    SELECTs. Each statement sees what was committed when it started, as each does in a
    READ COMMITTED transaction; what the read adds (the audit entry of a cross-tenant read)
    is written when the scope ends without an error."""
    session = session_factory(settings)()
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
        session.commit()
    finally:
        session.close()


def existing_engines() -> list[Engine]:
    """The engines made so far (tracing instruments them when it is turned on later)."""
    with _lock:
        return list(_engines.values())


def dispose_engines() -> None:
    """Drop pooled connections (after fork: a child must never reuse its parent's sockets)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)


def reset_engines() -> None:
    """Close and forget every engine (tests switching databases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def dialect_insert(session_or_engine: Session | Engine, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the bound dialect (PostgreSQL or SQLite)."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) \
        else session_or_engine
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
