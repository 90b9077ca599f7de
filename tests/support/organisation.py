"""A small, readable engineering organisation's events for pipeline tests (deterministic)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from tests.support.envelopes import envelope

OFFSET = timezone(timedelta(hours=1))
WORK_TYPES = ["commit_created", "commit_created", "build_succeeded", "test_passed",
              "file_edited", "pr_reviewed", "pr_commented", "context_switch"]


def organisation_events(tenant: str, *, end_day: date, days: int = 21, actors: int = 12,
                        surge_actor: str | None = None, surge_days: int = 6,
                        seed: int = 7, until: datetime | None = None) -> list[dict[str, Any]]:
    """``actors`` people in two teams working Mon-Fri 09:00-17:00 (+01:00) over ``days`` days
    ending ``end_day``. ``surge_actor`` moves most of its work to 20:00-23:30 on the last
    ``surge_days`` workdays and stops collaborating (a burnout pattern). ``until`` drops what
    would happen at or after it (a day still in progress: ``end_day=now.date(), until=now``
    gives yesterday's traffic and this morning's, which closes yesterday)."""
    rng = random.Random(seed)
    names = [f"eng{i:02d}" for i in range(actors)]
    events: list[dict[str, Any]] = []
    start = end_day - timedelta(days=days - 1)
    workdays = [start + timedelta(days=i) for i in range(days)
                if (start + timedelta(days=i)).weekday() < 5]
    surge_from = workdays[-surge_days] if surge_actor else None
    for name_i, name in enumerate(names):
        team = "alpha" if name_i % 2 == 0 else "beta"
        for day in workdays:
            surging = surge_actor == name and surge_from is not None and day >= surge_from
            for _ in range(rng.randint(9, 13)):
                if surging:
                    hour, minute = rng.choice([20, 21, 22, 23]), rng.randint(0, 29)
                else:
                    hour, minute = rng.randint(9, 16), rng.randint(0, 59)
                ts = datetime(day.year, day.month, day.day, hour, minute, rng.randint(0, 59),
                              tzinfo=OFFSET)
                signal_type = rng.choice(WORK_TYPES)
                payload: dict[str, Any] = {}
                if signal_type in ("pr_reviewed", "pr_commented"):
                    if surging:
                        signal_type = "commit_created"
                    else:
                        payload["counterpart_actor_id"] = rng.choice(
                            [n for n in names if n != name])
                events.append(envelope(tenant, actor=name, signal_type=signal_type,
                                       occurred_at=ts, payload=payload,
                                       resource={"team_id": team, "actor_type": "human"}))
    if until is not None:
        events = [e for e in events if datetime.fromisoformat(e["occurred_at"]) < until]
    events.sort(key=lambda e: e["occurred_at"])
    return events


def utc_day(dt: datetime) -> date:
    return dt.astimezone(UTC).date()


#: A Wednesday noon: yesterday is evaluated (the read API's and the pages' tenant ``acme``).
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)


def acme_like(tenant: str, *, end_day: date, until: datetime, **kw: Any) -> list[dict[str, Any]]:
    """The organisation with 16 actors, a surge on eng03, and eng12..eng15 a team of four
    (below ``min_team_size``)."""
    events = organisation_events(tenant, end_day=end_day, until=until, actors=16,
                                 surge_actor="eng03", **kw)
    for e in events:
        if int(e["actor_id"][3:]) >= 12:
            e["resource"]["team_id"] = "tiny"
    return events
