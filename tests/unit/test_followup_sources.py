"""One way to schedule follow-up work (issue 19): no task body, view or use case sends a task
message itself. They record follow-ups in the task outbox (``services/followups.py``), sent
after commit by ``tasks.base.dispatch_followups``, with one named exception: the ingest API's
publisher-confirmed publish of an accepted batch (what makes its 503 possible), which the
view leaves to the use case ``services.batches.queue_batch``."""

from __future__ import annotations

import ast
from pathlib import Path

import ubi

SENDS = {"apply_async", "send_task", "delay", "retry"}
#: (module, function) allowed to send: the dispatcher, the retry of a failed task (a new
#: message of the same task with its countdown, UbiTask's error handling), UbiTask's own
#: ``apply_async`` (Celery's, with a bounded wait for the confirm: every send goes through it)
#: and the ingest API.
ALLOWED = {("ubi/tasks/base.py", "_send"), ("ubi/tasks/base.py", "_fail"),
           ("ubi/tasks/base.py", "apply_async"),
           ("ubi/services/batches.py", "queue_batch")}


def _sends(path: Path, root: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SENDS):
                found.append((str(path.relative_to(root)), fn.name, node.lineno))
    return found


def test_no_task_view_or_use_case_sends_a_message_outside_the_outbox() -> None:
    root = Path(ubi.__file__).resolve().parent.parent
    sends = [s for package in ("ubi/tasks", "ubi/web", "ubi/services")
             for path in sorted((root / package).rglob("*.py")) for s in _sends(path, root)]
    assert sends, "the scan found nothing: it looks at the wrong place"
    offending = [s for s in sends if (s[0], s[1]) not in ALLOWED]
    assert offending == [], offending
    # the named exception is still where it is said to be
    assert any(s[:2] == ("ubi/services/batches.py", "queue_batch") for s in sends), sends
