"""All 13,144 real envelopes of celery/celery's git history through the API and a worker."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from tests.support.envelopes import post_events, real_envelopes, wait_for_batch
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import Event, EventKey, daily_rollups


def _after_hours(ts: datetime) -> bool:
    """Default working hours (Mon-Fri 09:00-18:00) in the event's own offset."""
    return ts.weekday() >= 5 or not (9 <= ts.hour < 18)


@pytest.mark.slow
def test_real_history_ingested_once_and_rollups_match_the_file(
        client, tokens, db_session, settings, ingest_worker,
        shared_clock) -> None:
    # The history's newest event is of 2026-08-08: "now" is the Monday noon after it, so that
    # no event is in the future (and none is a day in the future, which would be rejected).
    shared_clock.set(datetime(2026, 8, 10, 12, tzinfo=UTC), ticking=True)
    lines = real_envelopes()
    assert len(lines) == 13_144
    token = tokens("public-oss", "ubi:write:events")

    def post_all() -> Counter[str]:
        summary: Counter[str] = Counter()
        batch_ids = []
        for start in range(0, len(lines), 1000):
            body = b'{"events":[' + b",".join(lines[start:start + 1000]) + b"]}"
            resp = post_events(client, token, body)
            assert resp.status_code == 202, resp.json
            summary.update(resp.json["summary"])
            batch_ids.append(resp.json["batch_id"])
        for batch_id in batch_ids:
            assert wait_for_batch(client, token, batch_id, timeout=120)["status"] == "done"
        return summary

    first = post_all()
    assert first == Counter({"total": 13_144, "accepted": 13_144, "duplicates": 0,
                             "rejected": 0})
    count = lambda model: db_session.execute(  # noqa: E731
        sa.select(sa.func.count()).select_from(model)).scalar()
    assert count(Event) == 13_144 and count(EventKey) == 13_144

    second = post_all()
    assert second == Counter({"total": 13_144, "accepted": 0, "duplicates": 13_144,
                              "rejected": 0})
    db_session.expire_all()
    assert count(Event) == 13_144

    # Rollups against counts computed here, straight from the file.
    records = [json.loads(line) for line in lines]
    per_actor = Counter(r["actor_id"] for r in records)
    top_actor = per_actor.most_common(1)[0][0]
    by_day: dict[date, Counter[str]] = {}
    for r in records:
        if r["actor_id"] != top_actor:
            continue
        ts = datetime.fromisoformat(r["occurred_at"])
        day = ts.astimezone(UTC).date()
        c = by_day.setdefault(day, Counter())
        c[r["signal_type"]] += 1
        c["after_hours"] += _after_hours(ts)
        c["events"] += 1
    alias = Pseudonymiser(settings.pseudonym_secret).pseudonym("public-oss", top_actor)
    rows = {r.day: r for r in db_session.execute(
        sa.select(daily_rollups).where(daily_rollups.c.actor_id == alias)).all()}
    assert set(rows) == set(by_day)
    busiest = sorted(by_day, key=lambda d: -by_day[d]["events"])[:5]
    for day in busiest:
        expected, row = by_day[day], rows[day]._mapping
        assert row["event_count"] == expected["events"]
        assert row["n_commit_created"] == expected["commit_created"]
        assert row["n_pr_merged"] == expected["pr_merged"]
        assert row["after_hours"] == expected["after_hours"]
    total_by_type = db_session.execute(sa.select(
        sa.func.sum(daily_rollups.c.n_commit_created),
        sa.func.sum(daily_rollups.c.n_pr_merged))).one()
    types = Counter(r["signal_type"] for r in records)
    assert tuple(total_by_type) == (types["commit_created"], types["pr_merged"])
    actor_types = dict(db_session.execute(sa.select(
        Event.actor_type, sa.func.count()).group_by(Event.actor_type)).all())
    assert actor_types == {"human": 12_875, "service": 269}

    # Its features, computed and evaluated through its last day, then the full recompute (the
    # whole history arrived long after its days): equal to a from-scratch computation.
    from ubi.models import session_factory
    from ubi.services import detection, features
    from ubi.services.feature_check import check_features

    db_session.rollback()
    days = {datetime.fromisoformat(r["occurred_at"]).astimezone(UTC).date() for r in records}
    last_day = max(days)
    with session_factory()() as s:
        features.compute_tenant_features(s, "public-oss")
        detection.detect_tenant(s, "public-oss", through=last_day)
        features.recompute_features(s, "public-oss")
        s.commit()
    with session_factory()() as s:
        report = check_features(s, "public-oss")
    assert report.consistent, report.summary()
    assert report.first_day is not None
    assert report.compared > 10_000 and min(days) < report.first_day
