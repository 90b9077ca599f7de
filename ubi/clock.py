"""The one source of "now" for UBI: every service, task and CLI command asks here.

In production this is the system clock. In development and in the test suite every process
(web, workers, beat, the CLI, the tests themselves) can share one clock instead: a small JSON
file named by ``UBI_CLOCK_FILE`` (honoured only with ``UBI_DEV_MODE=1``)::

    {"at": "2026-06-19T16:05:00+00:00", "set_at": 1781885100.0, "ticking": true}

A ticking clock runs on from ``at`` at the speed of real time (``set_at`` is the system time at
which it was set); a frozen one stays at ``at``. Moving time is rewriting the file
(``set_shared_clock``, or ``ubi clock set``); every process sees the change at its next read,
so a test moves time across processes instead of sleeping. Without the file the system clock
applies.

Token lifetimes are the one exception: PyJWT checks ``exp`` and ``iat`` against the system
clock, as the platform IAM that issues the tokens does.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ubi.settings import clock_file


@dataclass(frozen=True)
class SharedClock:
    """The content of a shared clock file."""

    at: datetime
    set_at: float
    ticking: bool = True

    def now(self) -> datetime:
        if not self.ticking:
            return self.at
        return self.at + timedelta(seconds=time.time() - self.set_at)


def _shared() -> SharedClock | None:
    # Read on every call (a few microseconds, development and tests only): a cache keyed on
    # the file's metadata could miss two writes within one timestamp tick.
    path = clock_file()
    if path is None:
        return None
    try:
        return read_shared_clock(path)
    except FileNotFoundError:
        return None


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    shared = _shared()
    return shared.now() if shared is not None else datetime.now(UTC)


def today() -> date:
    """The current UTC day."""
    return utcnow().date()


def read_shared_clock(path: Path) -> SharedClock:
    """Parse a shared clock file (a malformed file is an error, never a silent real clock)."""
    text = path.read_text()  # FileNotFoundError: no shared clock (the system clock applies)
    try:
        raw = json.loads(text)
        at = datetime.fromisoformat(raw["at"])
        if at.tzinfo is None:
            raise ValueError("'at' needs a UTC offset")
        return SharedClock(at=at.astimezone(UTC), set_at=float(raw["set_at"]),
                           ticking=bool(raw.get("ticking", True)))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"unreadable shared clock file {path}: {exc}") from exc


def set_shared_clock(path: Path, at: datetime, *, ticking: bool = True) -> SharedClock:
    """Set the shared clock in ``path`` to ``at`` (timezone-aware), atomically."""
    if at.tzinfo is None:
        raise ValueError("the clock needs a timezone-aware instant")
    shared = SharedClock(at=at.astimezone(UTC), set_at=time.time(), ticking=ticking)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"at": shared.at.isoformat(), "set_at": shared.set_at,
                               "ticking": shared.ticking}))
    os.replace(tmp, path)
    return shared


def clear_shared_clock(path: Path) -> None:
    """Back to the system clock."""
    path.unlink(missing_ok=True)
