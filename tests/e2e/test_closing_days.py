"""Days close by the clock, end to end (SPEC §9, "Closing days"), on every day of the week.

A team's traffic (Monday to Friday, five weeks) arrives through the API as it happens, and
real worker processes (ingest, pipeline, maintenance) store it, compute features and evaluate
the days its data closes. Then the shared clock, which those processes read as the test does,
moves to 07:00 (UTC, before the team's working day) of a day of the week of Monday 2026-06-15,
the day close that beat runs is sent, and the day before is evaluated: Friday on Saturday
morning, Sunday on Monday morning, not when Monday's first event arrives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.support.envelopes import post_events, wait_for_batch
from tests.support.organisation import organisation_events
from tests.support.servers import WorkerProcess
from tests.support.waiting import wait_until
from ubi.models import DirtySubject, IngestionState, session_factory

WEEK = [date(2026, 6, 15) + timedelta(days=i) for i in range(7)]


@pytest.fixture(scope="module")
def workers(database, broker):
    procs = [WorkerProcess(group) for group in ("ingest", "pipeline", "maintenance")]
    try:
        yield procs
    finally:
        for proc in procs:  # all at once: each may take its time to shut down
            proc.proc.terminate()
        for proc in procs:
            proc.stop()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def evaluated_through(tenant: str) -> date | None:
    with session_factory()() as s:
        state = s.get(IngestionState, tenant)
        return state.last_evaluated_day if state is not None else None


def settled(tenant: str, through: date) -> bool:
    """Every dirty subject computed and the tenant evaluated through ``through``."""
    with session_factory()() as s:
        dirty = s.query(DirtySubject).filter(DirtySubject.tenant_id == tenant).count()
    return dirty == 0 and evaluated_through(tenant) == through



@pytest.mark.slow
@pytest.mark.parametrize("day", WEEK, ids=[d.strftime("%A") for d in WEEK])
def test_yesterday_closes_by_the_clock_on_every_day_of_the_week(
        day: date, client, tokens, clean_db, shared_clock, workers) -> None:
    from ubi.tasks.maintenance import close_days

    tenant = f"team-{day:%a}".lower()
    last_workday = day - timedelta(days=1)
    while last_workday.weekday() >= 5:
        last_workday -= timedelta(days=1)
    events = organisation_events(tenant, end_day=last_workday, days=35, actors=6)
    final = [e for e in events if e["occurred_at"].startswith(last_workday.isoformat())]
    history = [e for e in events if e not in final]
    token = tokens(tenant, "ubi:write:events")

    def post(items: list[dict[str, object]]) -> None:
        ids = [post_events(client, token, items[i:i + 1000]).json["batch_id"]
               for i in range(0, len(items), 1000)]
        for batch_id in ids:
            assert wait_for_batch(client, token, batch_id, timeout=60)["status"] == "done"

    # Weeks of history, then the last working day's events as they happen (its traffic ends
    # at 16:00 UTC): that day's data closes the day before it, not the day itself.
    shared_clock.set(at(last_workday, 6), ticking=True)
    post(history)
    shared_clock.set(at(last_workday, 16, 5), ticking=True)
    post(final)
    assert wait_until(lambda: settled(tenant, last_workday - timedelta(days=1))), \
        evaluated_through(tenant)

    # The next morning(s): nothing more is due, the clock closes the days up to yesterday.
    # Nothing else is running for the tenant now: the day close (what beat sends at :05 and
    # :35) is what hands it to detection.
    shared_clock.set(at(day, 7), ticking=True)
    close_days.apply_async()
    assert wait_until(lambda: evaluated_through(tenant) == day - timedelta(days=1)), \
        evaluated_through(tenant)
