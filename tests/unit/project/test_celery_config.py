"""Every task's reliability options and routes, checked across the registry (warehouse habit)."""

from __future__ import annotations

from kombu import Queue

import celeryconfig
from ubi.celery_app import app
from ubi.tasks.base import RETRY_POLICY, RetryPolicy, UbiTask, is_transient


def _ubi_tasks() -> dict[str, object]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith("ubi.")}


def test_every_task_is_reliable_and_routed_to_its_module_queue() -> None:
    tasks = _ubi_tasks()
    assert "ubi.tasks.maintenance.probe" in tasks
    for name, task in tasks.items():
        assert isinstance(task, UbiTask), name
        assert task.acks_late and task.reject_on_worker_lost, name
        # One retry policy for all: transient errors only, handled by UbiTask (which also
        # covers the commit), never Celery's autoretry around the body alone.
        assert task.max_retries == RETRY_POLICY.max_retries, name
        assert not getattr(task, "autoretry_for", ()), name
        queue_name = name.split(".")[2]
        route = celeryconfig.route_task(name, (), {}, {})
        assert isinstance(route["queue"], Queue)
        assert route["queue"].name == celeryconfig.QUEUE_BY_NAME[queue_name].name
        assert name == f"{task.__module__}.{task.__name__}", "stable dotted names"


def test_queues_dead_letter_with_a_delivery_limit() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_acks_on_failure is False
    assert app.conf.task_create_missing_queues is False
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["confirm_publish"] is True
    # A worker whose broker is gone waits for it however long it takes (no exit, no restart).
    assert app.conf.broker_connection_retry is True
    assert app.conf.broker_connection_max_retries is None
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event
    assert {q.name.removeprefix(celeryconfig.P("")) for q in celeryconfig.task_queues} == {
        "ingest", "features", "baselines", "detect", "publish", "receipts", "maintenance"}
    for queue in celeryconfig.task_queues:
        # (kombu sets a Queue's declared attributes at run time; its types omit this one)
        args = queue.as_dict()["queue_arguments"]
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-exchange"] == celeryconfig.DEAD_LETTER_EXCHANGE.name
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        assert 3 <= args["x-delivery-limit"] <= 5


def test_unknown_task_names_have_no_route() -> None:
    import pytest

    with pytest.raises(LookupError):
        celeryconfig.route_task("somewhere.else.task", (), {}, {})


def test_beat_entries_expire_and_route() -> None:
    for name, entry in celeryconfig.beat_schedule.items():
        assert entry["options"]["expires"] > 0, name
        assert entry["task"] in _ubi_tasks(), name


def test_transient_errors_are_retried_long_enough_to_ride_out_a_failover() -> None:
    policy = RetryPolicy(window_s=900)
    waits = [policy.delay(n, rng=lambda: 0.0) for n in range(policy.max_retries)]
    assert sum(waits) >= 900  # even with the shortest jitter
    assert max(policy.delay(n, rng=lambda: 1.0) for n in range(40)) == 60  # capped
    assert waits[:5] == [1, 1, 2, 4, 8]  # whole seconds, exponential from the start
    assert RetryPolicy(window_s=0).max_retries == 0
    assert RETRY_POLICY.window_s == 900  # UBI_TASK_RETRY_WINDOW's default


def test_what_counts_as_transient() -> None:
    import psycopg
    import sqlalchemy.exc

    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError(
        "connection refused"))
    assert is_transient(lost)
    assert is_transient(psycopg.errors.SerializationFailure("could not serialize"))
    assert is_transient(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert is_transient(psycopg.errors.AdminShutdown("terminating connection"))
    assert is_transient(psycopg.errors.TooManyConnections("too many clients"))
    assert is_transient(sqlalchemy.exc.TimeoutError("QueuePool limit reached"))
    assert not is_transient(ValueError("bad input"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, ValueError("dup")))
