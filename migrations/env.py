"""Alembic environment: runs migrations against the configured UBI database."""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy import Connection

from ubi.models import Base
from ubi.models.session import create_db_engine
from ubi.settings import get_settings

target_metadata = Base.metadata
_PARTITION = re.compile(r"^events_(p\d{8}|default)$")


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Daily partitions of ``events`` are data, not schema: autogenerate must ignore them."""
    if type_ == "table" and name and _PARTITION.match(name):
        return False
    return not (type_ == "index" and name and name.startswith("events_"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Callers (``ubi db upgrade``, tests) may hand over an open connection.
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.attributes.get("url") or get_settings().database_url
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    url = context.config.attributes.get("url") or get_settings().database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
