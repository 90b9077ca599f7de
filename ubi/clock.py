"""The one source of "now" for services (tests move time by replacing it, nothing else)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return _now()


def today() -> date:
    """The current UTC day."""
    return _now().date()


def set_clock(fn: Callable[[], datetime]) -> None:
    """Replace the clock (tests): ``fn`` returns timezone-aware UTC datetimes."""
    global _now
    _now = fn


def reset_clock() -> None:
    global _now
    _now = lambda: datetime.now(UTC)  # noqa: E731
