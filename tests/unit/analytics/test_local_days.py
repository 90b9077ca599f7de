"""Presence on the actor's own calendar (issue 18): a person in UTC-8 works on two UTC days
every day, so their days off only show on local days."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

from ubi.analytics.activity import LOCAL_NEXT, LOCAL_PREVIOUS, LOCAL_SAME
from ubi.analytics.rollups import build_daily_activity
from ubi.analytics.tenant_config import TenantConfig
from ubi.simulation.replay import analyse_envelopes, prepare_events

MONDAY = date(2024, 1, 1)
WEEKS = 8
TENANT = "acme"


def _envelopes(actor: str, offset_hours: int, days: list[date], hours: range) -> list[dict]:
    """Three events an hour over ``hours`` (local) of each local day in ``days``."""
    tz = timezone(timedelta(hours=offset_hours))
    out = []
    for day in days:
        for h in hours:
            for kind in ("commit_created", "build_succeeded", "test_passed"):
                at = datetime(day.year, day.month, day.day, h, 10, tzinfo=tz)
                out.append({
                    "signal_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{actor}/{at}/{kind}")),
                    "tenant_id": TENANT, "actor_id": actor, "signal_kind": "event",
                    "signal_type": kind, "occurred_at": at.isoformat(),
                    "ingested_at": at.astimezone(UTC).isoformat(),
                    "resource": {"repo": "acme/app", "actor_type": "human", "team_id": "app"},
                    "payload": {}, "schema_version": "1.0"})
    return out


def _workdays(first: date, n_days: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n_days)
            if (first + timedelta(days=i)).weekday() < 5]


def test_rollup_rows_record_the_local_days_of_their_events() -> None:
    # 17:00 on Monday in UTC-8 is 01:00 UTC on Tuesday; 01:00 on Tuesday in UTC+9 is 16:00 UTC
    # on Monday.
    prepared = prepare_events([
        *_envelopes("west", -8, [MONDAY], range(17, 18)),
        *_envelopes("east", 9, [MONDAY + timedelta(days=1)], range(1, 2)),
    ], tenant_id=TENANT)
    activity = build_daily_activity(prepared.events, TenantConfig.default())
    row = {prepared.actor_of[a]: i for i, a in enumerate(activity.subject_ids)}
    assert activity.start_day == MONDAY and activity.local_days is not None
    assert activity.local_days[row["west"]].tolist() == [0, LOCAL_PREVIOUS]
    assert activity.local_days[row["east"]].tolist() == [LOCAL_NEXT, 0]
    present, so_far = activity.presence()
    # each was present on one local day: west on Monday, east on Tuesday...
    assert present[row["west"]].tolist() == [True, False]
    assert present[row["east"]].tolist() == [False, True]
    # ...but west's Monday was only known once UTC Tuesday had arrived
    assert so_far[row["west"]].tolist() == [False, False]
    assert so_far[row["east"]].tolist() == [False, True]
    assert LOCAL_SAME == 2


def test_scattered_days_off_in_utc_minus_8_are_an_engagement_drop() -> None:
    """A team in UTC-8 working 10:00-18:00 local (18:00-02:00 UTC). One of them is away three
    workdays of five for two weeks (present Tuesday and Friday). On UTC days they still have
    events on four or five days a week; on their own days they were away."""
    n_days = 7 * WEEKS
    all_days = _workdays(MONDAY, n_days)
    drop_from = MONDAY + timedelta(days=35)
    drop_days = [d for d in all_days if drop_from <= d < drop_from + timedelta(days=14)]
    envelopes = []
    for i in range(6):
        days = [d for d in all_days if not (i == 0 and d in drop_days
                                            and d.weekday() not in (1, 4))]
        envelopes += _envelopes(f"dev-{i}", -8, days, range(10, 18))
    utc_days = {datetime.fromisoformat(e["occurred_at"]).astimezone(UTC).date()
                for e in envelopes if e["actor_id"] == "dev-0"}
    week = [drop_from + timedelta(days=k) for k in range(7)]
    assert sum(d in utc_days for d in week) == 4  # Tue, Wed, Fri, Sat in UTC: no day off

    analysis, actor_of = analyse_envelopes(envelopes, tenant_id=TENANT,
                                           end_day=MONDAY + timedelta(days=n_days - 1))
    signals = [c.signal for c in analysis.signals.changes if c.signal.actor_scope == "actor"]
    drops = [s for s in signals if s.signal_class == "engagement_drop"]
    assert {actor_of[s.subject_id] for s in drops} == {"dev-0"}, [
        (actor_of[s.subject_id], s.reason) for s in signals]
    first = min(drops, key=lambda s: s.created_at)
    assert first.reason.startswith("active on "), first.reason
    assert "away on 2 separate occasions" in first.reason, first.reason
    assert drop_from <= first.created_at.date() <= drop_from + timedelta(days=9)
