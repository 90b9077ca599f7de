"""Creating and removing the per-run servers' resources (database, broker objects)."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from kombu import Connection

from ubi.integrations.broker import delete_broker_objects
from ubi.models import Base
from ubi.services.databases import create_database, database_exists, drop_database

__all__ = ["create_database", "database_exists", "delete_broker_objects", "drop_database",
           "purge_task_queues", "queue_exists", "truncate_all"]


#: Configuration a migration seeds (the stream's default subscriptions): kept, like the schema.
SEEDED_TABLES = frozenset({"stream_subscriptions"})


def truncate_all(database_url: str) -> None:
    """Empty every table of the schema (partitions included), keeping the schema and the
    seeded configuration (a test that adds a subscription removes it)."""
    from ubi.models import get_engine
    from ubi.services.configs import invalidate

    engine = get_engine()
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables
                      if t.name not in SEEDED_TABLES)
    with engine.begin() as conn:
        # Work an earlier test left running (a worker thread past its shutdown timeout) would
        # hold locks the TRUNCATE waits for while itself waiting, in Python, on a connection
        # queued behind the TRUNCATE: a wait PostgreSQL cannot see as a deadlock. End it.
        conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state IS DISTINCT FROM 'idle' AND backend_type = 'client backend'"))
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    invalidate()


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


def ready_messages(broker_url: str, name: str) -> int:
    """Messages ready in a queue (not delivered to a consumer)."""
    with Connection(broker_url) as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare(name, passive=True).message_count)
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


def wait_for_lock_waiter(engine: sa.Engine, timeout: float) -> int:
    """Wait until a session of the engine's database waits on a lock (a worker reached the
    row a test holds); the number waiting, 0 if none did within ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        # A fresh connection each time: activity views are snapshotted per transaction.
        with engine.connect() as probe:
            waiting = int(probe.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()")).scalar() or 0)
        if waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.1)
