"""The test run's shared clock (``ubi/clock.py``): the test process and every process it starts
(web, workers, beat, the CLI) read the same file, so a test moves time everywhere at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from ubi import clock


class TestClock:
    """Move the shared clock: ``set`` to an instant (ticking on, or frozen), ``advance`` by a
    duration; reading or assigning ``now`` gets or freezes the current instant."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, path: Path):
        self.path = path

    @property
    def now(self) -> datetime:
        return clock.utcnow()

    @now.setter
    def now(self, at: datetime) -> None:
        self.set(at, ticking=False)

    def set(self, at: datetime, *, ticking: bool) -> datetime:
        return clock.set_shared_clock(self.path, at, ticking=ticking).at

    def advance(self, delta: timedelta) -> datetime:
        shared = clock.read_shared_clock(self.path)
        return self.set(shared.now() + delta, ticking=shared.ticking)
