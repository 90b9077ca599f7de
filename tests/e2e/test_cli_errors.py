"""A command with a bad or missing setting, or a server it cannot reach, says so in one line
and exits non-zero (no traceback); the schema and topology commands need no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRETS = ("UBI_PSEUDONYM_SECRET", "UBI_RECEIPT_SIGNING_KEY", "UBI_DEV_MODE", "UBI_CLOCK_FILE")


def ubi(args: list[str], tmp_path: Path, *, drop: tuple[str, ...] = (),
        **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return subprocess.run([sys.executable, "-m", "ubi.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for part in expected:
        assert part in lines[0], lines[0]


def test_migrations_and_the_topology_need_no_secrets(database, broker, tmp_path: Path) -> None:
    upgraded = ubi(["db", "upgrade"], tmp_path, drop=SECRETS)
    assert upgraded.returncode == 0 and "database at" in upgraded.stdout, upgraded.stderr
    declared = ubi(["broker", "declare"], tmp_path, drop=SECRETS)
    assert declared.returncode == 0, declared.stderr
    # A command that pseudonymises or signs still refuses to start without them.
    assert_one_line(ubi(["dlq", "list"], tmp_path, drop=SECRETS), "UBI_PSEUDONYM_SECRET")


@pytest.mark.parametrize("args", [["db", "upgrade"], ["db", "current"], ["broker", "declare"],
                                  ["dlq", "list"], ["receipts", "dead"],
                                  ["token", "--tenant", "acme"], ["worker", "ingest"],
                                  ["beat"]])
def test_a_bad_setting_is_one_line(args: list[str], tmp_path: Path) -> None:
    assert_one_line(ubi(args, tmp_path, UBI_MAX_BATCH="many"),
                    "UBI_MAX_BATCH must be an integer, got 'many'")


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    assert_one_line(ubi(["db", "current"], tmp_path,
                        DATABASE_URL="postgresql+psycopg://ubi:secret@127.0.0.1:1/ubi"),
                    "postgresql+psycopg://ubi:***@127.0.0.1:1/ubi", "DATABASE_URL")
    assert_one_line(ubi(["broker", "declare"], tmp_path,
                        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:1//"),
                    "broker cannot be reached", "CELERY_BROKER_URL")
