"""docs/deployment.md's "Worker groups" stays true: its table names each Procfile worker with
its command and exactly the queues and tasks of its group, and every command the section
gives parses with the CLI it names (``ubi``, ``celery``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
from celery.bin.celery import celery as celery_cli
from celery.worker.control import Panel

import celeryconfig
from ubi.cli import main as ubi_cli
from ubi.tasks import names

ROOT = Path(__file__).resolve().parents[3]


def _section() -> str:
    text = (ROOT / "docs" / "deployment.md").read_text()
    return text.split("\n## Worker groups\n", 1)[1].split("\n## ", 1)[0]


def _table() -> dict[str, list[str]]:
    """Process name -> its row's cells (command, queues and tasks, concurrency)."""
    rows = {}
    for line in _section().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {n.strip(): c.strip() for n, _, c in (line.partition(":") for line in lines if line)}


def test_the_table_is_the_procfile_and_the_worker_groups() -> None:
    table, procfile = _table(), _procfile()
    assert set(table) == {f"worker_{g}" for g in celeryconfig.WORKER_GROUPS} | {"beat"}
    for process, (command, work, concurrency) in table.items():
        assert command == f"`{procfile[process]}`", process
        if process == "beat":
            continue
        group = process.removeprefix("worker_")
        queues = re.findall(r"`(\w+)`: ", work)
        assert queues == list(celeryconfig.WORKER_GROUPS[group]), process
        assert f"--concurrency {concurrency}" in command, process


def test_every_task_is_listed_in_the_row_of_the_group_that_runs_it() -> None:
    table = _table()
    for task in names.ALL:
        queue, function = task.split(".")[2:]
        (group,) = [g for g, qs in celeryconfig.WORKER_GROUPS.items() if queue in qs]
        row = table[f"worker_{group}"][1]
        assert f"`{function}`" in row, task


def _parses(argv: list[str]) -> None:
    """Resolve ``argv`` through the click groups of its CLI and, for ``ubi``, parse the last
    command's arguments as the shell would hand them over (nothing runs; Celery's commands
    need its app to parse theirs)."""
    command: click.Command = {"ubi": ubi_cli, "celery": celery_cli}[argv[0]]
    args = argv[1:]
    while isinstance(command, click.Group):
        ctx = command.make_context(argv[0], list(args), resilient_parsing=True)
        rest = [*ctx._protected_args, *ctx.args]
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, argv
        command, args = sub, rest[1:]
    if argv[0] == "ubi" and args:  # a bare name (`ubi worker`) is prose, not a command line
        command.make_context(command.name, list(args))


def test_every_command_of_the_section_parses() -> None:
    # The section's commands, placeholders filled: `ubi worker GROUP`, `-d ingest@HOST`.
    spans = re.findall(r"`((?:ubi|celery) [^`]+)`", _section().replace("\n  ", " "))
    commands = [c.strip() for span in spans for c in span.split("&&")]
    assert len(commands) > 10
    for command in commands:
        argv = shlex.split(command.replace("GROUP", "ingest").replace("HOST", "host"))
        _parses(argv)
        if argv[0] == "celery" and argv[3:4] in (["control"], ["inspect"]):
            assert argv[4] in Panel.data, command  # the workers' remote-control commands
