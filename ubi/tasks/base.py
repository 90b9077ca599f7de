"""The one Task base class: it owns the transaction, the log context and follow-up dispatch.

A task body receives ``self.session`` (open for the task's run), calls one service function and
returns. On success the session commits, then the follow-ups the service recorded in the task
outbox are sent; on error it rolls back and Celery retries (transient errors, with backoff and
jitter) or dead-letters the message (``task_acks_on_failure = False``).
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Task
from celery.exceptions import Reject
from sqlalchemy.orm import Session

from ubi.models.session import session_factory
from ubi.observability import context
from ubi.services.followups import OUTBOX_IDS_KEY, claim_pending, mark_dispatched, mark_failed

log = logging.getLogger("ubi.tasks")

#: Errors worth retrying: the database, broker or Redis was briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class PermanentTaskError(Exception):
    """The input can never succeed: dead-letter at once, do not retry."""


class UbiTask(Task):
    """Base of every UBI task (see module docstring)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = (PermanentTaskError,)
    max_retries = 5
    retry_backoff = 2
    retry_backoff_max = 300  # well below RabbitMQ's consumer_timeout (30 min)
    retry_jitter = True

    _session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("task session used outside a task run")
        return self._session

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = {k: kwargs.get(k) for k in ("tenant_id", "correlation_id", "batch_id")}
        with context.bound(task_id=self.request.id, **ids):
            previous = self._session
            session = session_factory()()
            self._session = session
            try:
                result = super().__call__(*args, **kwargs)
                session.commit()
                outbox_ids = list(session.info.pop(OUTBOX_IDS_KEY, []))
            except PermanentTaskError as exc:
                session.rollback()
                log.error("task failed permanently: %s", exc)
                raise Reject(str(exc), requeue=False) from exc
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
                self._session = previous
            if outbox_ids:
                dispatch_followups(self.app, outbox_ids)
            return result


def dispatch_followups(app: Any, ids: list[int] | None = None, *,
                       older_than_seconds: float | None = None) -> int:
    """Send task-outbox rows (the given ids, or every pending row older than the given age)."""
    from datetime import timedelta

    sent = 0
    with session_factory()() as session:
        older = timedelta(seconds=older_than_seconds) if older_than_seconds else None
        rows = claim_pending(session, ids=ids, older_than=older)
        for row in rows:
            try:
                if row.task_name not in app.tasks:
                    # A web process only imports the tasks it sends itself; the follow-up's
                    # task object is needed to honour eager mode on the embedded default.
                    app.loader.import_default_modules()
                task = app.tasks.get(row.task_name)
                if task is not None:  # honours eager mode on the embedded default
                    task.apply_async(kwargs=row.kwargs)
                else:
                    app.send_task(row.task_name, kwargs=row.kwargs)
            except Exception as exc:  # broker down: the drain retries later
                mark_failed(row, repr(exc))
                log.warning("follow-up %s not sent yet: %s", row.task_name, exc)
                continue
            mark_dispatched(row)
            sent += 1
        session.commit()
    return sent


def look_again(task: Any, *, key: str, kwargs: dict[str, Any], countdown: float) -> bool:
    """Send ``task(**kwargs)`` again in ``countdown`` seconds, unless a look with the same
    ``key`` is already scheduled (Redis ``SET NX`` for the countdown): a step that found its
    tenant busy needs one more look once the running one is done, however many runs found it
    busy meanwhile. Without Redis (embedded default) or with Redis down, it always sends (an
    extra look is harmless). Returns whether it sent."""
    from ubi.integrations.dependencies import redis_client
    from ubi.settings import get_settings

    settings = get_settings()
    client = redis_client(settings)
    if client is not None:
        try:
            if not client.set(f"{settings.queue_prefix}ubi:look:{key}", "1", nx=True,
                              px=max(1, int(countdown * 1000))):
                return False
        except redis.exceptions.RedisError as exc:
            log.warning("look-again dedupe unavailable", extra={"ubi": {"error": str(exc)}})
    task.apply_async(kwargs=kwargs, countdown=countdown)
    return True
