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
from ubi.services.followups import (
    OWED_KEY,
    Owed,
    claim_pending,
    mark_dispatched,
    mark_failed,
)

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
                owed: list[Owed] = list(session.info.pop(OWED_KEY, []))
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
            if owed:
                dispatch_followups(self.app, owed)
            return result


#: How long a sent coalescing follow-up counts as queued if its task never says it started
#: (lost, purged): later commits send their own message after that at the latest.
QUEUED_TTL_MS = 60_000


def _queued_key(dedupe_key: str) -> str:
    from ubi.settings import get_settings

    return f"{get_settings().queue_prefix}ubi:queued:{dedupe_key}"


def needs_message(dedupe_key: str) -> bool:
    """Whether a follow-up committed just now needs a message of its own: not while a task with
    the same key is queued and has not started (it reads its work after this commit). Claims
    the key when it does (Redis ``SET NX``). Without Redis, or with Redis down: always."""
    from ubi.integrations.dependencies import redis_client

    client = redis_client()
    if client is None:
        return True
    try:
        return bool(client.set(_queued_key(dedupe_key), "1", nx=True, px=QUEUED_TTL_MS))
    except redis.exceptions.RedisError as exc:
        log.warning("follow-up coalescing unavailable", extra={"ubi": {"error": str(exc)}})
        return True


def task_started(dedupe_key: str) -> None:
    """A coalescing task calls this before it reads its work: what commits from now on needs
    a message of its own."""
    from ubi.integrations.dependencies import redis_client

    client = redis_client()
    if client is None:
        return
    try:
        client.delete(_queued_key(dedupe_key))
    except redis.exceptions.RedisError as exc:  # the mark expires on its own
        log.warning("follow-up coalescing unavailable", extra={"ubi": {"error": str(exc)}})


def _send(app: Any, task_name: str, kwargs: dict[str, Any], dedupe_key: str | None
          ) -> str | None:
    """Send one follow-up; the error, or None."""
    try:
        if task_name not in app.tasks:
            # A web process only imports the tasks it sends itself; the follow-up's task
            # object is needed to honour eager mode on the embedded default.
            app.loader.import_default_modules()
        task = app.tasks.get(task_name)
        if task is not None:  # honours eager mode on the embedded default
            task.apply_async(kwargs=kwargs)
        else:
            app.send_task(task_name, kwargs=kwargs)
    except Exception as exc:  # broker down: the drain retries later
        if dedupe_key is not None:
            task_started(dedupe_key)  # nothing is queued: the next commit must send
        log.warning("follow-up %s not sent yet: %s", task_name, exc)
        return repr(exc)
    return None


def dispatch_followups(app: Any, owed: list[Owed] | None = None, *,
                       older_than_seconds: float | None = None) -> int:
    """Send the follow-ups a transaction owed (``owed``), or every outbox row waiting longer
    than ``older_than_seconds`` (the drain). A coalescing follow-up whose task is queued and
    not started yet is left as it is: that task covers it."""
    from datetime import timedelta

    if owed is not None:
        owed = [o for o in owed if o.dedupe_key is None or needs_message(o.dedupe_key)]
        if not owed:
            return 0
    sent = 0
    with session_factory()() as session:
        older = timedelta(seconds=older_than_seconds) if older_than_seconds else None
        rows = claim_pending(session, ids=None if owed is None else sorted({o.id for o in owed}),
                             older_than=older)
        for row in rows:
            if owed is None and row.dedupe_key is not None and not needs_message(row.dedupe_key):
                continue
            error = _send(app, row.task_name, row.kwargs, row.dedupe_key)
            if error is not None:
                mark_failed(row, error)
                continue
            mark_dispatched(row)
            sent += 1
        session.commit()
    # A coalescing row another dispatcher holds or has sent already: this commit's message
    # still goes, since the task that row was sent for may have started before this commit.
    claimed = {row.id for row in rows}
    for o in owed or []:
        if (o.dedupe_key is not None and o.id not in claimed
                and _send(app, o.task_name, o.kwargs, o.dedupe_key) is None):
            sent += 1
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
