"""A real worker runs tasks from the real broker; a permanent failure is dead-lettered."""

from __future__ import annotations

import time

import pytest

from tests.support.workers import running_worker


def _wait_depth(dlq, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    depth = dlq.depth()
    while depth < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        depth = dlq.depth()
    return depth


@pytest.mark.slow
def test_worker_runs_task_and_failure_reaches_dlq(database, broker, settings) -> None:
    from ubi.celery_app import app
    from ubi.integrations.dlq import DeadLetterQueue
    from ubi.tasks.maintenance import probe

    dlq = DeadLetterQueue(settings, known_tasks={n for n in app.tasks if n.startswith("ubi.")})
    dlq.purge()
    with running_worker("maintenance"):
        result = probe.apply_async(kwargs={"note": "hello"}, ignore_result=False)
        assert result.get(timeout=30) == {"ok": True, "note": "hello"}

        # A note standing for personal data (an ingest message's kwargs hold raw actor ids).
        failing = probe.apply_async(kwargs={"fail": True, "note": "alice@example.com"})
        assert _wait_depth(dlq, 1) == 1

        letters = dlq.list()
        assert [d.task_id for d in letters] == [failing.id]
        letter = letters[0]
        assert letter.task_name == "ubi.tasks.maintenance.probe"
        assert letter.reason == "rejected"
        assert letter.original_queue == settings.queue_name("maintenance")
        assert letter.headers["x-death"][0]["queue"] == settings.queue_name("maintenance")
        # The listing shows the summary set at publish: sizes, never the values.
        assert letter.args_summary == "args=() kwargs={fail=True, note=<17 bytes>}"
        assert letter.headers["kwargsrepr"] == "{fail=True, note=<17 bytes>}"
        assert dlq.depth() == 1  # listing returned the message to the queue

        # Re-drive: the unchanged message goes back to its queue, fails again, and returns
        # to the DLQ carrying the re-drive count.
        assert dlq.retry(failing.id) == [failing.id]
        deadline = time.monotonic() + 30
        redriven = []
        while time.monotonic() < deadline:
            redriven = [d for d in dlq.list() if d.redrives == 1]
            if redriven:
                break
            time.sleep(0.2)
        assert [d.task_id for d in redriven] == [failing.id]
    assert dlq.purge() == 1


def test_dlq_refuses_unknown_task_names(database, broker, settings) -> None:
    from kombu import Connection, Exchange, Producer

    from ubi.integrations.dlq import DeadLetterQueue

    dlq = DeadLetterQueue(settings, known_tasks={"ubi.tasks.maintenance.probe"})
    dlq.purge()
    with Connection(settings.broker_url) as conn:
        Producer(conn.channel()).publish(
            {"x": 1}, exchange=Exchange(settings.queue_name("ubi.tasks.dlx"), type="topic"),
            routing_key="anything", headers={"task": "evil.task", "id": "t-1"},
            declare=[], retry=False)
    assert _wait_depth(dlq, 1, timeout=10) == 1
    with pytest.raises(ValueError, match="unknown task"):
        dlq.retry("t-1")
    assert dlq.depth() == 1
    assert dlq.purge() == 1
