"""Local time, working hours and day types (SPEC §5, §5.2, §9).

Days are UTC days. Working hours are judged in the event's own UTC offset, unless the tenant
sets an IANA timezone. Everything here is vectorised over numpy arrays of epoch seconds so the
ingest hot path classifies a whole batch in a few array operations.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from ubi.analytics.tenant_config import TenantConfig

EPOCH_DAY = date(1970, 1, 1)
LATE_NIGHT_START_MINUTE = 22 * 60
LATE_NIGHT_END_MINUTE = 6 * 60


def day_number(d: date) -> int:
    """Days since 1970-01-01 (the integer day index used in arrays)."""
    return (d - EPOCH_DAY).days


def day_from_number(n: int) -> date:
    return EPOCH_DAY + timedelta(days=int(n))


def zone_offsets_minutes(epoch_s: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """UTC offset in minutes of ``tz`` at each instant (cached per UTC hour: DST moves on hours)."""
    hours = (epoch_s // 3600).astype(np.int64)
    unique_hours, inverse = np.unique(hours, return_inverse=True)
    offsets = np.empty(len(unique_hours), dtype=np.int64)
    for i, h in enumerate(unique_hours):
        dt = datetime.fromtimestamp(int(h) * 3600, tz=UTC).astimezone(tz)
        off = dt.utcoffset()
        offsets[i] = int(off.total_seconds() // 60) if off is not None else 0
    return offsets[inverse]


def classify_times(epoch_s: np.ndarray, offset_min: np.ndarray,
                   config: TenantConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each event: (after_hours, late_night) as boolean arrays, and its local day number.

    ``epoch_s`` are UTC epoch seconds, ``offset_min`` the event's own UTC offset in minutes
    (ignored when the tenant sets a timezone). An event is after hours when its local weekday is
    not a workday, its local date is a tenant holiday, or its local time of day falls outside
    [start, end). Late night is 22:00–06:00 local.
    """
    epoch_s = np.asarray(epoch_s, dtype=np.int64)
    if config.timezone is not None:
        offsets = zone_offsets_minutes(epoch_s, config.timezone)
    else:
        offsets = np.asarray(offset_min, dtype=np.int64)
    local = epoch_s + offsets * 60
    local_day = np.floor_divide(local, 86400)
    minute = np.floor_divide(local - local_day * 86400, 60)
    weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    workday = np.isin(weekday, np.fromiter(config.workdays, dtype=np.int64))
    if config.holidays:
        holiday_days = np.array([day_number(h) for h in config.holidays], dtype=np.int64)
        workday &= ~np.isin(local_day, holiday_days)
    in_hours = (minute >= config.work_start_minute) & (minute < config.work_end_minute)
    after_hours = ~(workday & in_hours)
    late_night = (minute >= LATE_NIGHT_START_MINUTE) | (minute < LATE_NIGHT_END_MINUTE)
    return after_hours, late_night, local_day


def utc_day_numbers(epoch_s: np.ndarray) -> np.ndarray:
    """UTC day index of each instant."""
    return np.floor_divide(np.asarray(epoch_s, dtype=np.int64), 86400)


def workday_mask(day_numbers: np.ndarray, config: TenantConfig) -> np.ndarray:
    """True for UTC days that are workdays of the tenant (weekday in its week, not a holiday)."""
    days = np.asarray(day_numbers, dtype=np.int64)
    weekday = (days + 3) % 7
    mask = np.isin(weekday, np.fromiter(config.workdays, dtype=np.int64))
    if config.holidays:
        mask &= ~np.isin(days, np.array([day_number(h) for h in config.holidays]))
    return mask


def day_type(d: date, config: TenantConfig) -> str:
    """``workday`` or ``weekend`` (holidays count as weekend days for baselines)."""
    return "workday" if bool(workday_mask(np.array([day_number(d)]), config)[0]) else "weekend"
