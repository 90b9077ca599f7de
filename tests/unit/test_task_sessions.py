"""A task's session belongs to the thread running it: the task object is shared by every
thread of a threads (or gevent) pool, and two runs at once once traded sessions (one ended
the other's with "task session used outside a task run")."""

from __future__ import annotations

import threading
from typing import Any

from ubi.celery_app import app
from ubi.tasks.base import UbiTask

first_inside = threading.Event()
both_inside = threading.Barrier(2, timeout=10)
first_done = threading.Event()


@app.task(base=UbiTask, bind=True, name="tests.unit.session_of_this_run")
def session_of_this_run(self: UbiTask, wait: bool) -> int:
    mine = self.session
    if not wait:
        first_inside.set()
    both_inside.wait()  # both runs hold a session now
    if wait:
        first_done.wait(timeout=10)  # the other run ends (and closes its session) first
    else:
        first_done.set()
    assert self.session is mine
    return id(mine)


def test_two_runs_of_one_task_on_two_threads_keep_their_own_sessions() -> None:
    results: dict[bool, Any] = {}

    def run(wait: bool) -> None:
        results[wait] = session_of_this_run.apply(kwargs={"wait": wait})

    # The run that starts first ends first, while the other still works.
    threads = [threading.Thread(target=run, args=(w,)) for w in (False, True)]
    threads[0].start()
    assert first_inside.wait(timeout=10)
    threads[1].start()
    for t in threads:
        t.join(timeout=30)
    assert all(r.successful() for r in results.values()), {
        w: r.traceback for w, r in results.items()}
    assert results[True].result != results[False].result
