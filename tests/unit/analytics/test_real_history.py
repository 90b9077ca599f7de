"""The analytics core over the real celery/celery git history (13,144 envelopes): it runs
without error, and pinned facts match counts computed here straight from the raw lines."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import numpy as np

from tests.support.envelopes import real_envelopes
from ubi.analytics.calendar import day_number
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.envelope import decode_envelopes
from ubi.analytics.events import map_envelope
from ubi.analytics.features import compute_features
from ubi.analytics.privacy import DropAccount, Pseudonymiser
from ubi.analytics.rollups import build_daily_activity
from ubi.analytics.taxonomy import FEATURE_INDEX
from ubi.analytics.tenant_config import TenantConfig

SECRET = b"real-history-test"


def _after_hours(ts: datetime) -> bool:
    return ts.weekday() >= 5 or not (9 <= ts.hour < 18)


def test_real_history_features_match_the_raw_lines_and_the_engine_runs() -> None:
    lines = real_envelopes()
    records = [json.loads(line) for line in lines]
    config = TenantConfig.default()
    alias = Pseudonymiser(SECRET)
    envelopes = decode_envelopes(b"[" + b",".join(lines) + b"]")
    events = [map_envelope(e, config, alias, DropAccount()).event for e in envelopes]
    assert all(e is not None for e in events) and len(events) == 13_144

    # Hand-checkable facts: the most active actor's busiest UTC day.
    top = Counter(r["actor_id"] for r in records).most_common(1)[0][0]
    per_day: Counter[date] = Counter()
    for r in records:
        if r["actor_id"] == top:
            per_day[datetime.fromisoformat(r["occurred_at"]).astimezone(UTC).date()] += 1
    day = per_day.most_common(1)[0][0]
    raw = [datetime.fromisoformat(r["occurred_at"]) for r in records
           if r["actor_id"] == top and r["signal_type"] == "commit_created"
           and datetime.fromisoformat(r["occurred_at"]).astimezone(UTC).date() == day]
    every = [datetime.fromisoformat(r["occurred_at"]) for r in records
             if r["actor_id"] == top
             and datetime.fromisoformat(r["occurred_at"]).astimezone(UTC).date() == day]
    expected_commits = len(raw)
    expected_after_hours = sum(_after_hours(ts) for ts in every) / len(every)

    mine = [e for e in events if e is not None and e.actor_id == alias.pseudonym(
        "public-oss", top)]
    activity = build_daily_activity(mine, config, start_day=day - timedelta(days=30),
                                    end_day=day)
    cube = compute_features(activity, "24h", config)
    d = (day - activity.start_day).days
    assert cube.values[0, d, FEATURE_INDEX["commit_count"]] == expected_commits
    assert np.isclose(cube.values[0, d, FEATURE_INDEX["after_hours_ratio"]],
                      expected_after_hours)
    assert cube.values[0, d, FEATURE_INDEX["event_count"]] == len(every)

    # The whole engine over the last year of the history: no exception, sane output.
    all_events = [e for e in events if e is not None]
    last = max(e.timestamp_utc for e in all_events).date()
    start = last - timedelta(days=365 + 118)
    window = [e for e in all_events if e.timestamp_utc.date() >= start]
    activity = build_daily_activity(window, config, start_day=start, end_day=last)
    analysis = analyse_tenant(activity, config, tenant_id="public-oss",
                              incomplete_days=np.zeros(activity.n_days, dtype=bool),
                              evaluate_from_day=day_number(last - timedelta(days=365)),
                              previous=None, now=datetime(last.year, last.month, last.day,
                                                          tzinfo=UTC) + timedelta(days=1))
    assert analysis.evaluated_days[-1] == day_number(last)
    assert sum(t.n_rows for t in analysis.baselines) > 0
    for change in analysis.signals.changes:
        assert change.signal.tenant_id == "public-oss"
        assert change.signal.reason
