"""The one Task base class: it owns the transaction, the log context, retries, dead-letters
and follow-up dispatch.

A task body receives ``self.session`` (open for the task's run), calls one service function and
returns. The session commits after the body, inside the same error handling: a failure at
commit is handled like one in the body. Then:

- a transient error (a database, broker or Redis briefly unreachable, a transaction the
  database aborted over a conflict) is retried, with exponential backoff and jitter, for
  ``UBI_TASK_RETRY_WINDOW`` seconds: a new message is published with a countdown and the
  current one is acknowledged only then;
- anything else (``PermanentTaskError``, an error no retry can fix, or transient errors past
  the window) dead-letters the message (``Reject``, no requeue: RabbitMQ moves it to
  ``ubi.tasks.dlq``) after the task's ``dead_lettered`` hook recorded why (an ingest batch
  is marked ``failed`` with the reason at once);
- on success, the follow-ups the service recorded in the task outbox are sent; a failure to
  send leaves them to the outbox drain and never fails the committed task. A task with a
  ``followup_key`` first marks its pending outbox row started (``services.followups``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import kombu.exceptions
import psycopg
import redis.exceptions
import sqlalchemy.exc
from celery import Task
from celery.exceptions import Reject, Retry
from sqlalchemy.orm import Session

from ubi.models.session import session_factory
from ubi.observability import context, tracing
from ubi.services import followups
from ubi.services.followups import (
    OWED_KEY,
    Owed,
    claim_pending,
    mark_dispatched,
    mark_failed,
)
from ubi.settings import get_settings

log = logging.getLogger("ubi.tasks")

#: Errors a retry can fix: a server briefly unreachable (restart, failover, network blip,
#: ``too many connections``, an exhausted pool) or a transaction the database aborted to
#: resolve a conflict (psycopg's serialization failures, deadlocks and admin shutdowns are
#: OperationalErrors). psycopg's own classes cover the COPYs made on the driver connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a retry can fix ``exc`` (see ``TRANSIENT_ERRORS``)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    # Any database error SQLAlchemy recognised as a lost connection.
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: the n-th retry waits between half and all of
    ``min(cap_s, first_s * 2**n)`` seconds, in whole seconds and at least one (RabbitMQ's
    native delayed delivery counts whole seconds), and retries go on until even the shortest
    waits add up to ``window_s`` (so a failover of that length is ridden out)."""

    window_s: float
    first_s: float = 1.0
    cap_s: float = 60.0  # well below RabbitMQ's consumer_timeout (30 min)

    def nominal(self, retries: int) -> float:
        return min(self.cap_s, self.first_s * 2 ** min(retries, 30))

    def delay(self, retries: int, rng: Callable[[], float] = random.random) -> int:
        """Seconds before retry number ``retries + 1``."""
        nominal = self.nominal(retries)
        return max(1, math.ceil(nominal / 2 + rng() * nominal / 2))

    @property
    def max_retries(self) -> int:
        total, n = 0.0, 0
        while total < self.window_s:
            total += self.nominal(n) / 2
            n += 1
        return n


RETRY_POLICY = RetryPolicy(get_settings().task_retry_window)


class PermanentTaskError(Exception):
    """The input can never succeed: dead-letter at once, do not retry."""


def _quietly(action: Callable[[], object]) -> None:
    # Rolling back or closing a session whose connection is gone raises too; the error that
    # matters is the one being handled.
    try:
        action()
    except Exception as exc:
        log.debug("session cleanup failed: %s", exc)


#: The session of the task run on this thread (``UbiTask.session``).
_runs = threading.local()


class UbiTask(Task):
    """Base of every UBI task (see module docstring)."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    #: Transient errors only (``RETRY_POLICY``); every other failure dead-letters at once.
    max_retries = RETRY_POLICY.max_retries

    #: A coalescing task's follow-up key, formatted with its kwargs ("features:{tenant_id}"):
    #: the task marks its pending outbox row started before it reads its work
    #: (``followups.mark_started``), so commits from then on owe a run of their own.
    followup_key: str | None = None

    def apply_async(self, *args: Any, **options: Any) -> Any:
        """Publish as Celery does, waiting for RabbitMQ's confirm at most the broker timeout.

        Unbounded, a broker that stops answering without closing the connection (a network
        partition, a hung node) held the publish forever: ``POST /events`` never answered, and
        a worker hung sending its follow-ups. A confirm not in time counts as a lost
        connection: the publish is retried on a new one (``task_publish_retry_policy``), then
        fails (the API answers 503). A copy that did arrive is harmless: every task is
        idempotent (an ingest batch is stored once)."""
        options.setdefault("confirm_timeout", get_settings().broker_connect_timeout)
        return super().apply_async(*args, **options)

    @property
    def session(self) -> Session:
        # The run's session belongs to the thread running it: a task object is shared by
        # every thread of a threads (or gevent) pool, so it cannot hold the session itself.
        session: Session | None = getattr(_runs, "session", None)
        if session is None:
            raise RuntimeError("task session used outside a task run")
        return session

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = {k: kwargs.get(k) for k in ("tenant_id", "correlation_id", "batch_id")}
        with context.bound(task_id=self.request.id, **ids):
            try:
                if self.followup_key is not None:
                    followups.mark_started(self.name, self.followup_key.format(**kwargs))
                result, owed = self._run_in_transaction(args, kwargs)
            except Retry:
                raise
            except Exception as exc:
                self._fail(exc, kwargs)
            if owed:
                try:
                    dispatch_followups(self.app, owed)
                except Exception as exc:  # committed: the outbox drain sends them later
                    log.warning("follow-ups left to the outbox drain: %s", exc)
            return result

    def _run_in_transaction(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                            ) -> tuple[Any, list[Owed]]:
        previous = getattr(_runs, "session", None)  # an eager task run inside another's
        session = session_factory()()
        _runs.session = session
        try:
            result = super().__call__(*args, **kwargs)
            session.commit()
            return result, list(session.info.pop(OWED_KEY, []))
        except BaseException:
            _quietly(session.rollback)
            raise
        finally:
            _quietly(session.close)
            _runs.session = previous

    def _fail(self, exc: Exception, kwargs: dict[str, Any]) -> NoReturn:
        """Retry a transient error while the window lasts; dead-letter everything else."""
        retries = int(self.request.retries or 0)
        transient = is_transient(exc)
        if transient and retries < RETRY_POLICY.max_retries:
            countdown = RETRY_POLICY.delay(retries)
            log.warning("transient failure, retry %d/%d in %d s: %s: %s", retries + 1,
                        RETRY_POLICY.max_retries, countdown, type(exc).__name__, exc)
            try:
                raise self.retry(exc=exc, countdown=countdown,
                                 max_retries=RETRY_POLICY.max_retries)
            except Retry:
                raise
            except Exception as publish_error:
                if self.request.called_directly or self.request.is_eager:
                    raise
                # The retry could not be published (the broker is down too): the message goes
                # back to its queue instead (RabbitMQ's delivery limit bounds this).
                log.warning("retry not published (%s): message requeued", publish_error)
                raise Reject(str(exc), requeue=True) from exc
        if isinstance(exc, PermanentTaskError):
            reason = str(exc)
            log.error("task failed permanently: %s", reason)
        elif transient:
            reason = f"still failing after {retries} retries: {type(exc).__name__}: {exc}"
            log.error("task dead-lettered: %s", reason)
        else:
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("task failed: %s", reason)
        try:
            self.dead_lettered(reason[:2000], kwargs)
        except Exception as hook_error:
            log.error("could not record the dead letter: %s", hook_error)
        raise Reject(reason, requeue=False) from exc

    def dead_lettered(self, reason: str, kwargs: dict[str, Any]) -> None:
        """Record, outside the failed transaction, that this message is dead-lettered."""


def _send(app: Any, task_name: str, kwargs: dict[str, Any], countdown: int | None
          ) -> str | None:
    """Send one follow-up; the error, or None."""
    try:
        if task_name not in app.tasks:
            # A web process only imports the tasks it sends itself; the follow-up's task
            # object is needed to honour eager mode on the embedded default.
            app.loader.import_default_modules()
        task = app.tasks.get(task_name)
        if task is not None:  # honours eager mode on the embedded default
            task.apply_async(kwargs=kwargs, countdown=countdown)
        else:
            app.send_task(task_name, kwargs=kwargs, countdown=countdown)
    except Exception as exc:  # broker down: the drain retries later
        log.warning("follow-up %s not sent yet: %s", task_name, exc)
        return repr(exc)
    return None


def dispatch_followups(app: Any, owed: list[Owed] | None = None, *,
                       older_than_seconds: float | None = None) -> int:
    """Send the follow-ups a transaction owed (``owed``), or, as the drain, every row never
    sent and older than ``older_than_seconds`` and every pending row whose message was lost
    (``followups.claim_pending``). This and the ingest API's confirmed publish are the only
    places that send task messages."""
    from datetime import timedelta

    if owed is not None and not owed:
        return 0
    sent = 0
    with session_factory()() as session:
        older = timedelta(seconds=older_than_seconds) if older_than_seconds else None
        rows = claim_pending(session, ids=None if owed is None else sorted({o.id for o in owed}),
                             older_than=older)
        for row in rows:
            kwargs = dict(row.kwargs)
            # Sent inside the trace of the transaction that owed it (a drain's too).
            with tracing.restored(kwargs.pop(tracing.TRACEPARENT_KWARG, None)):
                error = _send(app, row.task_name, kwargs, followups.countdown(row))
            if error is not None:
                mark_failed(row, error)
                continue
            mark_dispatched(row)
            sent += 1
        session.commit()
    return sent
