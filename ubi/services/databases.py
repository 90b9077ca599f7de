"""Whole databases on a PostgreSQL server: create, drop, check (per-run test and benchmark
databases; a deployment's database is created by its operator and migrated by ``schema``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def _admin(admin_url: str) -> Iterator[sa.Connection]:
    """An AUTOCOMMIT connection to the maintenance database (CREATE / DROP DATABASE)."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def create_database(admin_url: str, name: str) -> None:
    with _admin(admin_url) as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))


def drop_database(admin_url: str, name: str) -> None:
    """Drop the database if it exists, disconnecting whoever still uses it."""
    with _admin(admin_url) as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_exists(admin_url: str, name: str) -> bool:
    with _admin(admin_url) as conn:
        return bool(conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                 {"n": name}).scalar())


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointed at database ``name``."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
