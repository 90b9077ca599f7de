"""SPEC §9 "Arrival order": whatever order and batches a tenant's events arrive in, and however
the features and detect steps interleave with them, once the steps have caught up the stored
features equal a from-scratch computation over the stored events (``ubi check features``).
Days whose events arrived after ``late_event_days`` equal it after the full recompute."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import hypothesis
import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.support import resources
from tests.support.envelopes import envelope
from tests.support.organisation import organisation_events
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import DirtySubject, FeatureDay, FeatureRefresh, session_factory
from ubi.services import detection, feature_check, features, ingest
from ubi.store import features as feature_store

#: A Wednesday noon; the organisations below end with this morning's traffic.
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)
#: A week: every day within late_event_days (7) of now, so every arrival counts at once.
RECENT = organisation_events("inv", end_day=NOW.date(), until=NOW, days=7, actors=5, seed=3)
#: Two weeks: the first week's days are older than late_event_days when they arrive.
EVENTS = organisation_events("inv", end_day=NOW.date(), until=NOW, days=14, actors=4, seed=3)


def store(settings, events, batch: str) -> None:
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=batch, tenant_id="inv", events_json=json.dumps(events),
                           received_at=NOW, correlation_id=batch,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()


def step(name: str) -> None:
    with session_factory()() as s:
        if name == "features":
            features.compute_tenant_features(s, "inv")
        elif name == "detect":
            detection.detect_tenant(s, "inv")
        else:
            features.recompute_features(s, "inv")
        s.commit()


def check() -> feature_check.FeatureCheck:
    with session_factory()() as s:
        return feature_check.check_features(s, "inv")


@hypothesis.settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 120), min_size=1,
                                                  max_size=8),
       steps=st.lists(st.sampled_from(["none", "features", "detect", "both"]), min_size=8,
                      max_size=8))
def test_any_arrival_order_ends_consistent(settings, clean_db, shared_clock, seed: int,
                                           sizes: list[int], steps: list[str]) -> None:
    shared_clock.now = NOW
    resources.truncate_all(clean_db)
    events = list(RECENT)
    random.Random(seed).shuffle(events)
    i = k = 0
    while i < len(events):  # batches of the drawn sizes, each followed by the drawn steps
        n, between = sizes[k % len(sizes)], steps[k % len(steps)]
        store(settings, events[i:i + n], f"b{i}")
        i, k = i + n, k + 1
        for name in {"none": [], "features": ["features"], "detect": ["detect"],
                     "both": ["features", "detect"]}[between]:
            step(name)
    # The steps catch up (what their follow-ups do): no full recompute is needed.
    step("features")
    step("detect")
    report = check()
    assert report.consistent, report.summary()
    assert report.compared > 0 and report.evaluated_through == NOW.date() - timedelta(days=1)


def test_days_that_arrived_late_are_consistent_after_the_full_recompute(
        settings, database, shared_clock, clean_db) -> None:
    shared_clock.now = NOW
    events = list(EVENTS)
    random.Random(5).shuffle(events)
    for i in range(0, len(events), 150):
        store(settings, events[i:i + 150], f"b{i}")
        step("features")
        step("detect")
    with session_factory()() as s:
        late = s.execute(sa.select(FeatureRefresh.day).where(
            FeatureRefresh.kind == "all").order_by(FeatureRefresh.day)).scalars().all()
    cutoff = NOW.date() - timedelta(days=7)
    assert late and max(late) < cutoff  # the first week's days wait for the recompute
    assert not check().consistent  # (detection read them while they were still arriving)
    step("recompute")  # the nightly run
    report = check()
    assert report.consistent, report.summary()
    with session_factory()() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(FeatureRefresh)).scalar() == 0


def test_the_check_finds_missing_extra_and_different_rows(settings, database, shared_clock,
                                                          clean_db) -> None:
    shared_clock.now = NOW
    store(settings, EVENTS, "all")
    for name in ("features", "detect", "recompute"):
        step(name)
    assert check().consistent
    with session_factory()() as s:
        rows = s.execute(sa.select(FeatureDay).where(
            FeatureDay.actor_scope == "actor", FeatureDay.w24h.is_not(None)).order_by(
            FeatureDay.day, FeatureDay.subject_id).limit(3)).scalars().all()
        assert rows[0].w24h is not None and rows[2].w24h is not None
        partial, confidence, values = feature_store.unpack(rows[0].w24h)
        changed = [None if v != v else float(v) for v in values]
        changed[0] = (changed[0] or 0) + 1  # event_count: different
        rows[0].w24h = feature_store.pack(confidence, changed, partial)
        rows[1].w24h = None  # a window's values: missing
        s.add(FeatureDay(tenant_id="inv", actor_scope="actor", subject_id=rows[2].subject_id,
                         day=rows[2].day - timedelta(days=400), w24h=rows[2].w24h,
                         computed_at=rows[2].computed_at))  # extra
        s.commit()
    n_24h = len(feature_store.SLOTS["24h"])
    report = check()
    assert (report.missing, report.extra, report.different) == (n_24h, n_24h, 1), \
        report.summary()
    # The command line says the same and fails.
    result = subprocess.run([sys.executable, "-m", "ubi.cli", "check", "features", "--tenant",
                             "inv", "--json"], env=dict(os.environ), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert (out["consistent"], out["missing"], out["extra"], out["different"]) == \
        (False, n_24h, n_24h, 1)
    # The full recompute mends all three.
    with session_factory()() as s:
        features.recompute_features(s, "inv", everything=True)
        s.commit()
    assert check().consistent


def _actor_rows() -> dict[tuple[str, object], tuple[bytes | None, ...]]:
    with session_factory()() as s:
        rows = s.execute(sa.select(FeatureDay).where(FeatureDay.tenant_id == "inv",
                                                     FeatureDay.actor_scope == "actor")
                         ).scalars().all()
        return {(r.subject_id, r.day): (r.w24h, r.w7d, r.w28d) for r in rows}


def _with_focus_sessions(events: list[dict], seed: int) -> list[dict]:
    """``events`` plus focus sessions, some across midnight (a session counts on the day it
    ends, so its start's day and the next one's focus depend on each other)."""
    rng = random.Random(seed)
    out = list(events)
    for e in events[::9]:
        start = datetime.fromisoformat(e["occurred_at"]).replace(
            hour=rng.choice([10, 14, 23]), minute=rng.randint(0, 59))
        for kind, at in (("focus_session_started", start),
                         ("focus_session_ended", start + timedelta(minutes=rng.randint(20, 150)))):
            if at < NOW:
                out.append(envelope("inv", actor=e["actor_id"], signal_type=kind, occurred_at=at,
                                    resource=dict(e["resource"])))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_features_step_equals_a_full_recompute_on_random_dirty_sets(
        settings, clean_db, shared_clock, seed: int) -> None:
    """Whatever the dirty sets the runs see (batches of random sizes and arrival order, so
    late events into older days of the window, sessions split across batches and midnight,
    windows that cross the dirty range, runs skipped), the features step stores what the full
    recompute computes from the same rollups: the same subject-days and windows, the same
    confidence and values (float sums taken over another range may differ in the last bit),
    and ``metadata.partial`` on today's values only (the full recompute writes none); and
    the stored rows agree with the stored events (``ubi check features``: focus time paired
    again from the events, which the recompute reads from ``daily_focus`` like the step)."""
    shared_clock.now = NOW
    resources.truncate_all(clean_db)
    rng = random.Random(seed)
    events = _with_focus_sessions(list(RECENT), seed)
    rng.shuffle(events)
    i = 0
    while i < len(events):
        n = rng.choice([1, 5, 20, 60, 150])
        store(settings, events[i:i + n], f"b{i}")
        i += n
        if rng.random() < 0.6:
            step("features")
    step("features")
    # Against the stored events (focus paired again from them, not read from daily_focus).
    report = check()
    assert report.consistent and report.compared > 0, report.summary()
    incremental = _actor_rows()
    with session_factory()() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(DirtySubject)).scalar() == 0
        features.recompute_features(s, "inv", everything=True)
        s.commit()
    full = _actor_rows()
    assert incremental.keys() == full.keys() and len(full) > 0
    for key, packed in full.items():
        for window, stored, expected in zip(("24h", "7d", "28d"), incremental[key], packed,
                                            strict=True):
            assert (stored is None) == (expected is None), (key, window)
            if stored is None or expected is None:
                continue
            partial, confidence, values = feature_store.unpack(stored)
            _, want_confidence, want = feature_store.unpack(expected)
            assert partial is (key[1] == NOW.date()), (key, window)
            assert confidence == want_confidence, (key, window)
            assert np.allclose(values, want, rtol=1e-12, atol=1e-12, equal_nan=True), \
                (key, window, values, want)
