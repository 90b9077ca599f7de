"""Creating and removing the per-run servers' resources (database, broker objects)."""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa
from kombu import Connection

from ubi.models import Base


def _admin_engine(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")


def create_database(admin_url: str, name: str) -> None:
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def drop_database(admin_url: str, name: str) -> None:
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def database_exists(admin_url: str, name: str) -> bool:
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                     {"n": name}).scalar())
    finally:
        engine.dispose()


def truncate_all(database_url: str) -> None:
    """Empty every table of the schema (partitions included), keeping the schema."""
    from ubi.models import get_engine
    from ubi.services.configs import invalidate

    engine = get_engine()
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    invalidate()


def delete_broker_objects(broker_url: str, declared: dict[str, Any]) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in declared.get("queues", []):
            channel.queue_delete(queue)
        for exchange in declared.get("exchanges", []):
            channel.exchange_delete(exchange)
        channel.close()


def queue_exists(broker_url: str, name: str) -> bool:
    import amqp.exceptions

    with Connection(broker_url) as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(name, passive=True)
            return True
        except amqp.exceptions.NotFound:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()


def purge_task_queues(broker_url: str) -> None:
    """Drop messages a test left behind in this run's task queues."""
    import celeryconfig

    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in celeryconfig.task_queues:
            with contextlib.suppress(Exception):
                channel.queue_purge(queue.name)
        channel.close()
