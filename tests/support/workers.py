"""A real Celery worker on the real broker, in a thread of the test process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery.contrib.testing.worker import start_worker


@contextmanager
def running_worker(*queues: str, concurrency: int = 1) -> Iterator[object]:
    """Consume ``queues`` (names without the run prefix) until the block ends."""
    import celeryconfig
    from ubi.celery_app import app
    from ubi.integrations.broker import declare_topology

    declare_topology(app)
    names = [celeryconfig.QUEUE_BY_NAME[q].name for q in (queues or celeryconfig.QUEUE_NAMES)]
    with start_worker(app, pool="threads", concurrency=concurrency, queues=names,
                      perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=30.0) as worker:
        yield worker
