"""Closing days (SPEC §9): by the data, or by the clock when the tenant's usual traffic says
nothing more is due, whatever the day of the week. Pure: ``freshness.last_closed_day`` over
plain values, the week of Monday 2026-06-15 to Sunday 2026-06-21."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ubi.services.freshness import last_closed_day

#: A team working Monday to Friday, 08:00-16:00 UTC (the slots of its last four weeks).
OFFICE_HOURS = frozenset((wd, h) for wd in range(5) for h in range(8, 16))
MONDAY = date(2026, 6, 15)
WEEK = [MONDAY + timedelta(days=i) for i in range(7)]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def last_traffic_before(now: datetime) -> datetime:
    """The team's newest event at ``now``: the last office minute that has passed."""
    t = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    while (t.weekday(), t.hour) not in OFFICE_HOURS:
        t -= timedelta(minutes=1)
    return t


def closed(newest: datetime, now: datetime, *, received: datetime | None = None,
           usual: frozenset[tuple[int, int]] | None = OFFICE_HOURS) -> date | None:
    """Live delivery by default: each event is received seconds after it happens."""
    received = received or newest + timedelta(seconds=3)
    return last_closed_day(newest, received, now, lambda: usual)


@pytest.mark.parametrize("day", WEEK, ids=[d.strftime("%A") for d in WEEK])
@pytest.mark.parametrize("hour", [7, 12], ids=["before-work", "noon"])
def test_yesterday_is_closed_on_every_day_of_the_week(day: date, hour: int) -> None:
    """Before work (the clock closes yesterday) and at noon (today's events close it too);
    on Saturday, Sunday and Monday the team's traffic ended on Friday."""
    now = at(day, hour)
    assert closed(last_traffic_before(now), now) == day - timedelta(days=1)


FRIDAY = date(2026, 6, 19)
AFTER_FRIDAY = [FRIDAY + timedelta(days=i) for i in range(1, 8)]
#: Traffic ends on Friday and nothing arrives afterwards: the weekend closes by the clock;
#: Monday's office hours pass without an event (an ingestion gap), so from Monday on nothing
#: more closes by the clock, whatever the day: the data will close those days once events flow.
EXPECTED_AFTER_FRIDAY = {
    "Saturday": FRIDAY, "Sunday": FRIDAY + timedelta(days=1),
    "Monday": FRIDAY + timedelta(days=2), "Tuesday": FRIDAY + timedelta(days=2),
    "Wednesday": FRIDAY + timedelta(days=2), "Thursday": FRIDAY + timedelta(days=2),
    "Friday": FRIDAY + timedelta(days=2),
}


@pytest.mark.parametrize("day", AFTER_FRIDAY, ids=[d.strftime("%A") for d in AFTER_FRIDAY])
def test_traffic_ending_on_friday(day: date) -> None:
    now = at(day, 12)
    assert closed(at(FRIDAY, 15, 55), now) == EXPECTED_AFTER_FRIDAY[day.strftime("%A")]


def test_a_day_closes_once_its_end_and_the_grace_have_passed() -> None:
    newest = at(FRIDAY, 15, 55)
    thursday = FRIDAY - timedelta(days=1)
    assert closed(newest, at(FRIDAY + timedelta(days=1), 0, 59)) == thursday
    assert closed(newest, at(FRIDAY + timedelta(days=1), 1, 0)) == FRIDAY


def test_a_day_whose_usual_traffic_went_missing_waits_for_the_data() -> None:
    """Wednesday's events stop at 11:00 (an upstream outage): Wednesday never closes by the
    clock, however long it waits; Thursday's events close it (and the gap marks it)."""
    wednesday = MONDAY + timedelta(days=2)
    newest = at(wednesday, 10, 59)
    for hours in (14, 20, 40, 100):
        assert closed(newest, at(wednesday, 0) + timedelta(hours=hours)) == \
            wednesday - timedelta(days=1)
    assert closed(at(wednesday + timedelta(days=1), 8, 30),
                  at(wednesday + timedelta(days=1), 9)) == wednesday


def test_agents_around_the_clock_close_days_by_their_data() -> None:
    always = frozenset((wd, h) for wd in range(7) for h in range(24))
    sunday = WEEK[6]
    assert closed(at(sunday, 23, 58), at(sunday + timedelta(days=1), 3), usual=always) == \
        sunday - timedelta(days=1)
    assert closed(at(sunday + timedelta(days=1), 1, 30), at(sunday + timedelta(days=1), 3),
                  usual=always) == sunday


def test_a_backfill_or_replay_never_closes_days_by_the_clock() -> None:
    """The newest event was received long after it happened: only the data closes days, so
    a replay that is still posting Friday's events never has Friday evaluated half-way."""
    newest = at(FRIDAY, 11, 0)
    replayed = at(FRIDAY + timedelta(days=2), 9)
    assert closed(newest, replayed + timedelta(hours=1), received=replayed) == \
        FRIDAY - timedelta(days=1)


def test_without_four_weeks_of_history_only_the_data_closes_days() -> None:
    now = at(FRIDAY + timedelta(days=1), 12)
    assert closed(at(FRIDAY, 15, 55), now, usual=None) == FRIDAY - timedelta(days=1)


def test_usual_hours_are_read_only_when_the_clock_could_close_a_day() -> None:
    calls: list[int] = []

    def usual() -> frozenset[tuple[int, int]]:
        calls.append(1)
        return OFFICE_HOURS

    tuesday = MONDAY + timedelta(days=1)
    newest = at(tuesday, 10, 30)
    assert last_closed_day(newest, newest, at(tuesday, 11), usual) == MONDAY
    assert calls == []  # the data closed every day that has ended
    assert last_closed_day(None, None, at(tuesday, 11), usual) is None
