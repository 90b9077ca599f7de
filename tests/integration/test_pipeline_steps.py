"""The pipeline's steps called as plain functions against real PostgreSQL: idempotency,
out-of-order and late events, ingestion gaps, tenant isolation, the nightly recompute."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pytest
import sqlalchemy as sa

from tests.support import features as stored_features
from tests.support.organisation import organisation_events
from ubi import clock
from ubi.analytics.calendar import day_number
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.envelope import decode_envelopes
from ubi.analytics.events import map_envelope
from ubi.analytics.focus import SequenceEvent, focus_by_day
from ubi.analytics.privacy import DropAccount, Pseudonymiser
from ubi.analytics.rollups import build_daily_activity
from ubi.analytics.taxonomy import SEQUENCE_EVENT_TYPES
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import (
    Anomaly,
    Baseline,
    DirtySubject,
    IngestionState,
    Signal,
    SignalVersion,
    TenantDay,
    daily_focus,
    daily_rollups,
    session_factory,
)
from ubi.services import baselines, detection, features, freshness, ingest

#: Where these tests' clock stands still: a Wednesday noon (UTC), so that yesterday and today
#: are workdays of the weekday-only organisations they store.
WEDNESDAY_NOON = datetime(2026, 6, 17, 12, tzinfo=UTC)


@pytest.fixture
def frozen(shared_clock):
    """The shared clock, frozen at ``WEDNESDAY_NOON``; assigning ``frozen.now`` moves it."""
    shared_clock.now = WEDNESDAY_NOON
    return shared_clock


def store(settings, events, batch_id: str | None = None, tenant: str = "acme") -> None:
    """Run the ingest step directly (what the ingest task does), one transaction."""
    body = "[" + ",".join(json.dumps(e) for e in events) + "]"
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=batch_id or f"b-{random.random()}", tenant_id=tenant,
                           events_json=body, received_at=clock.utcnow(), correlation_id=None,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()


def run_features(tenant: str = "acme") -> features.FeaturesOutcome:
    with session_factory()() as s:
        out = features.compute_tenant_features(s, tenant)
        s.commit()
    return out


def run_detect(tenant: str = "acme", **kw) -> detection.DetectOutcome:
    with session_factory()() as s:
        out = detection.detect_tenant(s, tenant, **kw)
        s.commit()
    return out


def snapshot(session, model, *cols):
    session.expire_all()
    rows = sorted(tuple(r) for r in session.execute(
        sa.select(*[getattr(model, c) for c in cols])))
    if session.get_bind() is not None and not session.info.get("keep_open"):
        session.rollback()  # end the read transaction: it would block a TRUNCATE
    return rows


def test_steps_are_idempotent(settings, db_session, frozen) -> None:
    end_day = frozen.now.date() - timedelta(days=1)
    # This morning's traffic closes yesterday: detection evaluates through ``end_day``.
    events = organisation_events("acme", end_day=frozen.now.date(), until=frozen.now,
                                 surge_actor="eng03")
    store(settings, events, "batch-1")
    first = run_features()
    assert first.dirty > 0 and first.rows > 0

    # A detect run that dies before its commit (crash, SIGKILL) leaves nothing behind...
    with session_factory()() as s:
        s.info["keep_open"] = True
        crashed = detection.detect_tenant(s, "acme")
        lost_signals = snapshot(s, Signal, "signal_id", "version", "status", "severity")
        lost_features = stored_features.values(s)
        s.rollback()
    assert crashed.signal_versions > 0
    assert db_session.execute(sa.select(sa.func.count()).select_from(Signal)).scalar() == 0
    # ...and its retry computes exactly the same rows.
    out = run_detect()
    assert out.evaluated_through == end_day and out.signal_versions == crashed.signal_versions
    sigs = snapshot(db_session, Signal, "signal_id", "version", "status", "severity")
    feats = stored_features.values(db_session)
    assert sigs == lost_signals and feats == lost_features
    versions = snapshot(db_session, SignalVersion, "signal_id", "version")
    rollups = sorted(tuple(r) for r in db_session.execute(sa.select(
        daily_rollups.c.actor_id, daily_rollups.c.day, daily_rollups.c.event_count)))

    store(settings, events, "batch-1-again")  # a redelivered batch under another id
    assert run_features().dirty == 0  # nothing new inserted, nothing dirty
    assert run_detect().evaluated_from is None  # every closed day is evaluated already
    # Asking for evaluated days again changes nothing: evaluated days are final.
    assert run_detect(evaluate_from=end_day - timedelta(days=3)).evaluated_from is None
    assert snapshot(db_session, Signal, "signal_id", "version", "status", "severity") == sigs
    assert snapshot(db_session, SignalVersion, "signal_id", "version") == versions
    assert stored_features.values(db_session) == feats
    assert sorted(tuple(r) for r in db_session.execute(sa.select(
        daily_rollups.c.actor_id, daily_rollups.c.day, daily_rollups.c.event_count))) == rollups


def test_order_of_arrival_does_not_change_features(settings, db_session, frozen) -> None:
    end_day = frozen.now.date() - timedelta(days=1)
    events = organisation_events("acme", end_day=end_day, days=10, actors=4)
    store(settings, events)
    run_features()
    ordered = stored_features.values(db_session)
    from tests.support import resources

    resources.truncate_all(settings.database_url)
    shuffled = list(events)
    random.Random(3).shuffle(shuffled)
    for i in range(0, len(shuffled), 50):
        store(settings, shuffled[i:i + 50])
    run_features()
    assert stored_features.values(db_session) == ordered


def test_late_events_update_their_day_only_inside_the_window(settings, db_session, frozen) -> None:
    from tests.support.envelopes import envelope

    now = frozen.now
    store(settings, [envelope(actor="amy", occurred_at=now - timedelta(hours=2))])
    run_features()
    late_day = (now - timedelta(days=3)).date()
    store(settings, [envelope(actor="amy", signal_type="build_failed",
                              occurred_at=now - timedelta(days=3)),
                     envelope(actor="amy", signal_type="build_succeeded",
                              occurred_at=now - timedelta(days=3))])
    dirty = db_session.execute(sa.select(DirtySubject.day)).scalars().all()
    assert dirty == [late_day]
    run_features()
    rate = stored_features.record(db_session, "build_failure_rate", "24h", late_day).value
    assert rate == 0.5

    old = now - timedelta(days=30)  # beyond late_event_days (7): stored, not recomputed
    store(settings, [envelope(actor="amy", occurred_at=old)])
    assert db_session.execute(sa.select(sa.func.count()).select_from(DirtySubject)).scalar() == 0
    assert db_session.execute(sa.select(daily_rollups.c.event_count).where(
        daily_rollups.c.day == old.date())).scalar_one() == 1


def test_ingestion_gap_is_marked_incomplete_and_raises_nothing(
        settings, db_session, frozen) -> None:
    """RF-UBI-01: a tenant that stops sending has its gap marked incomplete; no anomaly or
    engagement_drop comes from the gap; when events resume, processing continues."""
    last_day = frozen.now.date() - timedelta(days=6)
    events = organisation_events("acme", end_day=last_day, days=28, actors=8)
    # The organisation's events arrive live: received when they happen.
    by_day: dict = {}
    for e in events:
        by_day.setdefault(datetime.fromisoformat(e["occurred_at"]).astimezone(UTC).date(),
                          []).append(e)
    for day in sorted(by_day):
        frozen.now = datetime(day.year, day.month, day.day, 18, tzinfo=UTC)
        store(settings, by_day[day])
    last = db_session.get(IngestionState, "acme").last_received_at
    db_session.rollback()
    frozen.now = last + timedelta(hours=1)
    run_features()
    before = run_detect()
    assert before.evaluated_through == last.date() - timedelta(days=1)

    # Outage: nothing arrives for four days (the tenant normally has traffic then).
    outage_end = last + timedelta(days=4)
    for hours in range(2, 4 * 24, 6):
        frozen.now = last + timedelta(hours=hours)
        with session_factory()() as s:
            freshness.track_tenant(s, "acme")
            s.commit()
    state = db_session.get(IngestionState, "acme")
    assert state.gap_open_since == last
    db_session.rollback()
    gap_days = set(db_session.execute(sa.select(TenantDay.day).where(
        TenantDay.reason == "gap")).scalars())
    outage_days = {(last + timedelta(days=i)).date() for i in range(1, 4)}
    assert outage_days | {last.date()} <= gap_days

    # Events resume: the gap closes by itself and detection moves on over the gap.
    from tests.support.envelopes import envelope

    frozen.now = outage_end
    store(settings, [envelope(actor=f"eng{i:02d}", occurred_at=outage_end - timedelta(
        minutes=30 + i)) for i in range(8)])
    with session_factory()() as s:
        freshness.track_tenant(s, "acme")
        s.commit()
    assert db_session.get(IngestionState, "acme").gap_open_since is None
    db_session.rollback()
    frozen.now = outage_end + timedelta(days=1, hours=3)
    store(settings, [envelope(actor="eng01", occurred_at=frozen.now - timedelta(hours=1))])
    run_features()
    after = run_detect()
    assert after.evaluated_through == outage_end.date()
    gap_anomalies = db_session.execute(sa.select(Anomaly).where(
        Anomaly.day.in_(sorted(outage_days | {outage_end.date()})))).scalars().all()
    assert gap_anomalies == [], [(a.day, a.feature_name, a.window, a.reason)
                                 for a in gap_anomalies]
    drops = db_session.execute(sa.select(Signal).where(
        Signal.signal_class == "engagement_drop")).scalars().all()
    assert drops == [], [(d.subject_id[:6], d.first_day, d.reason) for d in drops]


def test_tenants_never_read_each_others_data(settings, db_session, frozen) -> None:
    """IT-UBI-03: interleaved tenants get exactly the features and baselines they get alone."""
    end_day = frozen.now.date() - timedelta(days=1)
    acme = organisation_events("acme", end_day=end_day, days=20, actors=6, seed=1)
    globex = organisation_events("globex", end_day=end_day, days=20, actors=6, seed=2,
                                 surge_actor="eng01")
    store(settings, acme)
    run_features()
    run_detect()
    alone_f = stored_features.values(db_session)
    alone_b = snapshot(db_session, Baseline, "baseline_id", "mean", "std_dev", "n_observations")
    from tests.support import resources

    resources.truncate_all(settings.database_url)
    mixed = sorted(acme + globex, key=lambda e: e["occurred_at"])
    for i in range(0, len(mixed), 300):
        part = mixed[i:i + 300]
        for tenant in ("acme", "globex"):
            store(settings, [e for e in part if e["tenant_id"] == tenant], tenant=tenant)
    for tenant in ("acme", "globex"):
        run_features(tenant)
        run_detect(tenant)
    db_session.expire_all()
    acme_f = stored_features.values(db_session, "acme")
    acme_b = sorted(tuple(r) for r in db_session.execute(sa.select(
        Baseline.baseline_id, Baseline.mean, Baseline.std_dev, Baseline.n_observations).where(
        Baseline.tenant_id == "acme")))
    assert acme_f == alone_f
    assert acme_b == alone_b
    globex_subjects = {r.subject_id for r in stored_features.stored(db_session, "globex")}
    acme_subjects = {r.subject_id for r in stored_features.stored(db_session, "acme")}
    assert not (globex_subjects - {"globex", "human", "alpha", "beta"}) & acme_subjects
    assert all(s.tenant_id == "globex" for s in db_session.execute(
        sa.select(Signal).where(Signal.signal_class == "burnout_risk")).scalars())


def test_nightly_recompute_matches_the_analytics_library(settings, db_session, frozen) -> None:
    end_day = frozen.now.date() - timedelta(days=1)
    events = organisation_events("big", end_day=end_day, days=35, actors=200, seed=5)
    for i in range(0, len(events), 5000):
        store(settings, events[i:i + 5000], tenant="big")
    from ubi.tasks.baselines import recompute_tenant

    result = recompute_tenant.apply(kwargs={"tenant_id": "big"}).get()
    assert result["actors"] == 200 and result["baselines"] > 0

    # The same computation straight from the events with the pure library.
    config = TenantConfig.default()
    alias = Pseudonymiser(settings.pseudonym_secret)
    envs = decode_envelopes(json.dumps(events))
    mapped = [map_envelope(e, config, alias, DropAccount()).event for e in envs]
    start = end_day - timedelta(days=90 + 28 - 1)
    focus = focus_by_day(SequenceEvent(m.actor_id, m.epoch_s, m.event_type,
                                       m.properties.get("duration_ms"))
                         for m in mapped if m is not None
                         and m.event_type in SEQUENCE_EVENT_TYPES)
    activity = build_daily_activity([m for m in mapped if m is not None], config,
                                    start_day=start, end_day=end_day, focus=focus)
    expected = analyse_tenant(activity, config, tenant_id="big",
                              incomplete_days=np.zeros(activity.n_days, dtype=bool),
                              evaluate_from_day=day_number(end_day), previous=None,
                              now=frozen.now)
    want = {r.baseline_id: (r.mean, r.std_dev, r.n_observations)
            for t in expected.baselines for r in t.iter_rows()}
    got = {b: (m, s, n) for b, m, s, n in db_session.execute(sa.select(
        Baseline.baseline_id, Baseline.mean, Baseline.std_dev, Baseline.n_observations))}
    assert set(got) == set(want)
    for key, (mean, std, n) in want.items():
        g_mean, g_std, g_n = got[key]
        assert g_n == n
        assert (g_mean is None and mean is None) or g_mean == pytest.approx(mean, rel=1e-9,
                                                                             abs=1e-12)
        assert (g_std is None and std is None) or g_std == pytest.approx(std, rel=1e-9,
                                                                          abs=1e-12)
    _ = baselines  # the service the task calls


def test_ingest_never_waits_for_a_running_features_step(settings, db_session, frozen) -> None:
    """While a features run computes, it holds its tenant (a second run is told it is busy)
    and the focus rows it wrote, but no dirty or rollup row: a batch stored meanwhile commits
    at once. The run then releases only the pairs as it read them; the pair the batch marked
    again stays dirty for the next run, which computes its events."""
    from tests.support.envelopes import envelope
    from ubi.services import focus_time
    from ubi.services.tenant_locks import tenant_lock

    now = frozen.now
    store(settings, [
        envelope(actor="amy", occurred_at=now - timedelta(hours=3)),
        envelope(actor="amy", signal_type="focus_session_started",
                 occurred_at=now - timedelta(hours=5)),
        envelope(actor="amy", signal_type="focus_session_ended",
                 occurred_at=now - timedelta(hours=4))])
    running = session_factory()()
    try:
        # What a run does before its long compute phase: take the tenant, read the pairs,
        # refresh their focus.
        assert tenant_lock(running, "features", "acme")
        read_at = clock.utcnow()
        taken = features.pending_dirty(running, "acme")
        assert len(taken) == 1
        assert focus_time.refresh_focus(running, "acme", focus_time.affected_days(
            {(p[0], p[1]) for p in taken})) == 1
        assert run_features().busy  # one run per tenant at a time

        # Another batch for the same (actor, day) meanwhile, with another focus session:
        # stored at once (with a lock timeout, so waiting for the run would fail the test).
        body = json.dumps([envelope(actor="amy", signal_type="build_failed",
                                    occurred_at=now - timedelta(hours=2)),
                           envelope(actor="amy", signal_type="focus_session_started",
                                    occurred_at=now - timedelta(hours=2)),
                           envelope(actor="amy", signal_type="focus_session_ended",
                                    occurred_at=now - timedelta(hours=1, minutes=30))])
        with session_factory()() as s:
            s.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            ingest.store_batch(s, batch_id="b-during", tenant_id="acme", events_json=body,
                               received_at=clock.utcnow(), correlation_id=None,
                               pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
            s.commit()
        assert features.release_dirty(running, "acme", taken,
                                      read_at=read_at) == 0  # marked again: kept
        running.commit()
    finally:
        running.close()
    assert db_session.execute(sa.select(DirtySubject.batch_id)).scalars().all() == ["b-during"]
    db_session.rollback()
    out = run_features()
    assert (out.dirty, out.remaining) == (1, 0)
    count = stored_features.record(db_session, "event_count", "24h", now.date()).value
    assert count == 6
    assert db_session.execute(sa.select(sa.func.count()).select_from(DirtySubject)).scalar() == 0
    assert db_session.execute(sa.select(daily_focus.c.focus_minutes, daily_focus.c.focus_sessions)
                              ).one() == (90.0, 2)


def test_features_are_rewritten_only_when_they_change(
        settings, db_session, frozen) -> None:
    """A features run that finds a subject-day's values unchanged leaves its row alone (its
    computed_at stays that of the change); a changed value rewrites the row."""
    from tests.support.envelopes import envelope

    now = frozen.now
    store(settings, [envelope(actor="amy", occurred_at=now - timedelta(hours=3))])
    run_features()

    def row(name: str) -> tuple[float | None, datetime]:
        r = stored_features.record(db_session, name, "24h", now.date())
        db_session.rollback()
        return r.value, r.computed_at

    commits, first = row("commit_count")
    builds_before = row("build_failure_rate")
    frozen.now = now + timedelta(minutes=5)
    # The pair marked again with nothing new (a redelivered batch after a crash): the run
    # computes the same values and writes nothing.
    actor = db_session.execute(sa.select(daily_rollups.c.actor_id)).scalar_one()
    db_session.add(DirtySubject(tenant_id="acme", actor_id=actor, day=now.date(),
                                correlation_id=None, batch_id=None, marked_at=frozen.now))
    db_session.commit()
    assert run_features().dirty == 1
    assert row("commit_count") == (commits, first)  # unchanged: not rewritten
    frozen.now = now + timedelta(minutes=10)
    store(settings, [envelope(actor="amy", signal_type="build_failed",
                              occurred_at=now - timedelta(hours=2))])
    run_features()
    assert row("commit_count") == (commits, frozen.now)  # its subject-day's row changed
    rate, computed = row("build_failure_rate")
    assert rate == 1.0 and rate != builds_before[0] and computed == frozen.now


def test_focus_time_does_not_depend_on_how_sessions_were_batched(
        settings, db_session, frozen) -> None:
    """A session starting in one batch and ending in a later one counts on its end day, in
    whatever order and batches its events arrive; redelivery changes nothing."""
    from tests.support import resources
    from tests.support.envelopes import envelope

    midnight = datetime.combine(frozen.now.date() - timedelta(days=2), datetime.min.time(),
                                tzinfo=UTC)
    first_day, second_day = midnight.date() - timedelta(days=1), midnight.date()

    def ev(actor: str, kind: str, at: datetime, **payload):
        return envelope(actor=actor, signal_type=kind, occurred_at=at, payload=payload)

    events = [
        # alice: 23:30 -> 00:45 across midnight (75 min on the second day), then a
        # 25-minute session known only from its end's duration.
        ev("alice", "focus_session_started", midnight - timedelta(minutes=30)),
        ev("alice", "focus_session_ended", midnight + timedelta(minutes=45)),
        ev("alice", "focus_session_ended", midnight + timedelta(hours=5), duration_ms=25 * 60000),
        ev("alice", "commit_created", midnight - timedelta(hours=2)),
        # bob: context switches only, 30 and 90 minutes apart.
        ev("bob", "context_switch", midnight + timedelta(hours=9)),
        ev("bob", "context_switch", midnight + timedelta(hours=9, minutes=30)),
        ev("bob", "context_switch", midnight + timedelta(hours=11)),
        # carol: an end without a start whose duration is not a number is not trusted.
        ev("carol", "focus_session_ended", midnight + timedelta(hours=3), duration_ms="600000"),
    ]

    def focus() -> dict[tuple[str, object], tuple[float, int]]:
        """Every rollup's focus as the analytics read it (no focus row: none)."""
        r, f = daily_rollups.c, daily_focus.c
        rows = db_session.execute(sa.select(
            r.actor_id, r.day, sa.func.coalesce(f.focus_minutes, 0.0),
            sa.func.coalesce(f.focus_sessions, 0)).select_from(daily_rollups.outerjoin(
                daily_focus, sa.and_(f.tenant_id == r.tenant_id, f.actor_id == r.actor_id,
                                     f.day == r.day)))).all()
        db_session.rollback()
        alias = Pseudonymiser(settings.pseudonym_secret)
        names = {alias.pseudonym("acme", n): n for n in ("alice", "bob", "carol")}
        return {(names[a], d): (round(m, 6), s) for a, d, m, s in rows}

    store(settings, events)
    assert run_features().dirty == 4
    expected = {("alice", first_day): (0.0, 0), ("alice", second_day): (100.0, 2),
                ("bob", second_day): (120.0, 2), ("carol", second_day): (0.0, 0)}
    assert focus() == expected
    # A row only where there is focus.
    assert db_session.execute(sa.select(sa.func.count()).select_from(daily_focus)).scalar() == 2
    db_session.rollback()  # end the read transaction: it would block a TRUNCATE

    for order, each in ((list(reversed(events)), True), (events[3:] + events[:3], False)):
        resources.truncate_all(settings.database_url)
        for e in order:  # one event per batch, in another order
            store(settings, [e])
            if each:  # the features step runs between batches: partial sessions first
                run_features()
        run_features()
        assert focus() == expected
    store(settings, events, "again")  # a redelivery under another batch id
    run_features()
    assert focus() == expected


def test_detection_before_the_features_step_sees_every_stored_focus_session(
        settings, db_session, frozen) -> None:
    """Detection can evaluate a closed day before the features step has run for its last
    batches (ingestion hands it the day when event time passes midnight), and evaluated days
    are final: it refreshes the focus those batches brought first. The pairs stay dirty for
    the features step."""
    from tests.support.envelopes import envelope

    day = frozen.now.date() - timedelta(days=1)
    nine = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    # This morning's commit is what passes midnight and closes yesterday.
    store(settings, [envelope(actor="amy", signal_type="focus_session_started", occurred_at=nine),
                     envelope(actor="amy", signal_type="focus_session_ended",
                              occurred_at=nine + timedelta(minutes=50)),
                     envelope(actor="amy", occurred_at=nine + timedelta(days=1))])
    assert run_detect().evaluated_through == day
    value = stored_features.record(db_session, "focus_session_avg_minutes", "24h", day).value
    assert value == pytest.approx(50.0)
    assert db_session.execute(sa.select(daily_focus.c.focus_minutes)).scalar_one() == 50.0
    assert sorted(db_session.execute(sa.select(DirtySubject.day)).scalars()) == \
        [day, frozen.now.date()]
    db_session.rollback()


def test_refreshing_unchanged_focus_locks_no_row(settings, db_session, frozen) -> None:
    """Detection and the nightly recompute refresh pairs the features step has usually
    computed already, in long transactions: where nothing changed they must hold no focus row
    (ON CONFLICT would lock it until their commit, stalling the next features run)."""
    from tests.support.envelopes import envelope
    from ubi.services import focus_time

    nine = frozen.now - timedelta(hours=3)
    store(settings, [envelope(actor="amy", signal_type="focus_session_started", occurred_at=nine),
                     envelope(actor="amy", signal_type="focus_session_ended",
                              occurred_at=nine + timedelta(minutes=20))])
    run_features()
    amy = Pseudonymiser(settings.pseudonym_secret).pseudonym("acme", "amy")
    long_running = session_factory()()
    try:
        assert focus_time.refresh_focus(long_running, "acme", {(amy, nine.date())}) == 1
        with session_factory()() as other:  # would wait for long_running if it held the row
            other.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            # an UPDATE's result is a CursorResult (Session.execute is typed as returning Result)
            assert cast("sa.CursorResult[Any]", other.execute(sa.update(daily_focus).values(
                focus_minutes=daily_focus.c.focus_minutes))).rowcount == 1
            other.rollback()
    finally:
        long_running.rollback()
        long_running.close()


def test_focus_of_days_older_than_the_late_window_is_kept_by_ingestion(
        settings, db_session, frozen) -> None:
    """No features run computes a day older than the tenant's late-event window, so ingestion
    refreshes those days' focus itself; the day after such a day, inside the window, is
    marked for the features step (a session that started late on an old day ends on it)."""
    from tests.support.envelopes import envelope

    oldest = frozen.now.date() - timedelta(days=TenantConfig.default().late_event_days)
    midnight = datetime.combine(oldest, datetime.min.time(), tzinfo=UTC)
    amy = Pseudonymiser(settings.pseudonym_secret).pseudonym("acme", "amy")

    def ev(kind: str, at: datetime):
        return envelope(actor="amy", signal_type=kind, occurred_at=at)

    def focus() -> dict[object, tuple[float, int]]:
        rows = db_session.execute(sa.select(
            daily_focus.c.day, daily_focus.c.focus_minutes, daily_focus.c.focus_sessions).where(
            daily_focus.c.actor_id == amy)).all()
        db_session.rollback()
        return {d: (round(m, 6), n) for d, m, n in rows}

    def dirty() -> list[object]:
        days = db_session.execute(sa.select(DirtySubject.day)).scalars().all()
        db_session.rollback()
        return sorted(days)

    # A whole session three days before the window: focus at once, nothing to compute.
    old = midnight - timedelta(days=3)
    store(settings, [ev("focus_session_started", old + timedelta(hours=9)),
                     ev("focus_session_ended", old + timedelta(hours=10))])
    assert dirty() == []
    assert focus() == {old.date(): (60.0, 1)}

    # The window's first day: an end whose start arrives later, on the day before (too old).
    store(settings, [ev("focus_session_ended", midnight + timedelta(minutes=30))])
    assert dirty() == [oldest]
    run_features()
    assert focus() == {old.date(): (60.0, 1)}  # an end without its start counts nothing
    store(settings, [ev("focus_session_started", midnight - timedelta(minutes=30))])
    assert dirty() == [oldest]  # the started event's own day is too old; the next is not
    run_features()
    assert focus() == {old.date(): (60.0, 1), oldest: (60.0, 1)}
