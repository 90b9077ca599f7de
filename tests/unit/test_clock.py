"""The shared clock of development and tests (``ubi/clock.py``, ``UBI_CLOCK_FILE``): every
process reads one file, so moving time in one process moves it in all of them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from ubi import clock
from ubi.settings import SettingsError, load_settings

SATURDAY_MORNING = datetime(2026, 6, 20, 1, 30, tzinfo=UTC)


def ubi_clock(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ubi.cli", "clock", *args],
                            env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_process_reads_and_moves_the_same_clock(shared_clock) -> None:
    shared_clock.set(SATURDAY_MORNING, ticking=False)
    assert ubi_clock("show") == f"{SATURDAY_MORNING.isoformat()} (frozen, set to " \
                                f"{SATURDAY_MORNING.isoformat()})"
    ubi_clock("set", "2026-06-22T07:00:00+02:00", "--frozen")
    assert clock.utcnow() == datetime(2026, 6, 22, 5, tzinfo=UTC)
    assert clock.today().isoformat() == "2026-06-22"


def test_a_ticking_clock_runs_on_from_where_it_was_set(shared_clock) -> None:
    shared_clock.set(SATURDAY_MORNING, ticking=True)
    first = clock.utcnow()
    assert SATURDAY_MORNING <= first < SATURDAY_MORNING + timedelta(minutes=1)
    assert clock.utcnow() >= first
    moved = shared_clock.advance(timedelta(days=2))
    assert moved - SATURDAY_MORNING >= timedelta(days=2)
    assert clock.today().isoformat() == "2026-06-22"


def test_without_the_file_the_system_clock_applies(shared_clock) -> None:
    shared_clock.set(SATURDAY_MORNING, ticking=False)
    assert ubi_clock("reset") == "system clock"
    assert not shared_clock.path.exists()
    system = datetime.fromtimestamp(time.time(), UTC)  # what the clock must now agree with
    assert abs(clock.utcnow() - system) < timedelta(minutes=1)


def test_a_malformed_clock_file_is_an_error_not_the_system_clock(shared_clock) -> None:
    shared_clock.path.write_text('{"at": "2026-06-20T01:30:00"}')
    with pytest.raises(RuntimeError, match="unreadable shared clock file"):
        clock.utcnow()


def test_the_clock_file_needs_development_mode(tmp_path) -> None:
    env = {"UBI_DATA_DIR": str(tmp_path), "UBI_CLOCK_FILE": str(tmp_path / "clock.json")}
    with pytest.raises(SettingsError, match="UBI_DEV_MODE"):
        load_settings(env)
    assert load_settings({**env, "UBI_DEV_MODE": "1"}).clock_file == tmp_path / "clock.json"
    assert load_settings({"UBI_DATA_DIR": str(tmp_path)}).clock_file is None
