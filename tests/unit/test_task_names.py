"""Every task name in one registry (``ubi/tasks/names.py``, issue 19): what the task modules
register, what services owe as follow-ups and what beat schedules are the same names, and
each routes to a declared queue."""

from __future__ import annotations

import ast
from pathlib import Path

from kombu import Queue

import celeryconfig
import ubi
from ubi.celery_app import app
from ubi.tasks import names


def test_the_registry_is_what_the_workers_register() -> None:
    app.loader.import_default_modules()
    registered = {n for n in app.tasks if n.startswith("ubi.")}
    assert registered == names.ALL
    declared = {q.name for q in celeryconfig.task_queues}
    for name in names.ALL:
        queue = celeryconfig.route_task(name, (), {}, {})["queue"]
        assert isinstance(queue, Queue) and queue.name in declared, name
    assert {str(e["task"]) for e in celeryconfig.beat_schedule.values()} <= names.ALL


def test_no_module_spells_a_task_name_itself() -> None:
    """A task name written as a string literal anywhere but the registry would drift from it."""
    root = Path(ubi.__file__).resolve().parent
    spelled = []
    for path in sorted([*root.rglob("*.py"), root.parent / "celeryconfig.py"]):
        if path == root / "tasks" / "names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in names.ALL):
                spelled.append((path.name, node.lineno, node.value))
    assert spelled == []
