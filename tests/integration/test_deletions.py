"""Privacy deletions (issue 20, PR-UBI-03; SPEC §6, §8): after deleting one actor's events of
a range of days, every table is compared row by row with a tenant built from the same events
without them; the API's roles, the tombstones, the final signal versions on the stream and a
job resumed after a crash."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from kombu import Connection

from tests.conftest import SUITE_NOW
from tests.support import stream_messages
from tests.support.organisation import organisation_events, utc_day
from tests.support.pipeline import run_pipeline
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.integrations.signal_stream import SignalPublisher
from ubi.models import (
    Anomaly,
    AuditEntry,
    Baseline,
    DailyInteraction,
    DailyWorkItem,
    DeletionJob,
    Event,
    EventKey,
    IngestionState,
    Score,
    Signal,
    SignalOutbox,
    SignalVersion,
    daily_focus,
    daily_rollups,
    session_factory,
)
from ubi.services import batches, deletions, feature_check, ingest, stream
from ubi.store import features as feature_store

A, B = "del-a", "del-b"
ACTOR = "eng03"
FIRST, LAST = date(2026, 6, 8), date(2026, 6, 10)  # Monday to Wednesday, inclusive
T_FROM = datetime(2026, 6, 8, tzinfo=UTC)
T_TO = datetime(2026, 6, 11, tzinfo=UTC)


def _in_range(env: dict[str, Any]) -> bool:
    return env["actor_id"] == ACTOR and FIRST <= utc_day(
        datetime.fromisoformat(env["occurred_at"])) <= LAST


@pytest.fixture(scope="module")
def built(database, broker, settings) -> Iterator[dict[str, Any]]:
    """Tenant A with every event, tenant B with the same events but the actor's of the range;
    both through the pipeline (features, detection) at the suite's Wednesday noon."""
    from tests.conftest import CLOCK_FILE
    from tests.support import resources

    clock.set_shared_clock(CLOCK_FILE, SUITE_NOW, ticking=False)
    events = organisation_events(A, end_day=SUITE_NOW.date(), until=SUITE_NOW,
                                 surge_actor=ACTOR)
    deleted = [e for e in events if _in_range(e)]
    assert deleted
    run_pipeline(settings, A, events)
    run_pipeline(settings, B, [{**e, "tenant_id": B, "signal_id": "b-" + e["signal_id"]}
                               for e in events if not _in_range(e)])
    yield {"events": events, "deleted": deleted}
    resources.truncate_all(database)
    resources.purge_task_queues(settings.broker_url)


def _names(settings: Any) -> dict[str, str]:
    """Pseudonym → actor name, for both tenants (their pseudonyms differ)."""
    alias = Pseudonymiser(settings.pseudonym_secret)
    return {alias.pseudonym(t, f"eng{i:02d}"): f"eng{i:02d}" for t in (A, B) for i in range(12)}


def _rows(session: Any, table: Any, tenant: str, names: dict[str, str],
          skip: tuple[str, ...] = ()) -> set[tuple[Any, ...]]:
    """A tenant's rows of ``table`` with pseudonyms and the tenant id made comparable."""
    cols = [c for c in table.c if c.name not in ("tenant_id", "updated_at", *skip)]
    out = set()
    for row in session.execute(sa.select(*cols).where(table.c.tenant_id == tenant)):
        out.add(tuple(_comparable(v, tenant, names) for v in row))
    return out


def _feature_rows(session: Any, tenant: str, names: dict[str, str], through: date
                  ) -> set[tuple[Any, ...]]:
    """A tenant's feature records through ``through``, made comparable as ``_rows``."""
    return {tuple(_comparable(v, tenant, names) for v in (
        r.actor_scope, r.subject_id, r.feature_name, r.dimension, r.window, r.day,
        r.window_start, r.window_end, r.value, r.confidence))
        for r in feature_store.records(session, tenant, last=through)}


def _comparable(v: Any, tenant: str, names: dict[str, str]) -> Any:
    if isinstance(v, str):
        return "TENANT" if v == tenant else names.get(v, v)
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, dict):
        return json.dumps({k: _comparable(x, tenant, names) for k, x in v.items()},
                          sort_keys=True)
    if isinstance(v, list):
        return json.dumps([_comparable(x, tenant, names) for x in v])
    return v


def _job(session: Any, job_id: str) -> DeletionJob:
    job = session.get(DeletionJob, job_id)
    assert job is not None
    return job


def _delete(settings: Any) -> str:
    alias = Pseudonymiser(settings.pseudonym_secret)
    with session_factory()() as s:
        job_id = deletions.request_deletion(
            s, tenant_id=A, actor_id=alias.pseudonym(A, ACTOR), time_from=T_FROM,
            time_to=T_TO, requested_by="test", reason="privacy_request")
        s.commit()
    return job_id


@pytest.fixture(scope="module")
def deleted(built, settings) -> dict[str, Any]:
    job_id = _delete(settings)
    with session_factory()() as s:  # what the deletion must announce to consumers
        pseudo = Pseudonymiser(settings.pseudonym_secret).pseudonym(A, ACTOR)
        doomed = {sid: v for sid, v in s.execute(sa.select(Signal.signal_id, Signal.version)
                                                 .where(Signal.tenant_id == A,
                                                        Signal.subject_id == pseudo))}
    counts = deletions.run_deletion(job_id)
    return {**built, "job_id": job_id, "counts": counts, "doomed": doomed, "pseudo": pseudo}


def test_the_tenant_equals_one_that_never_had_the_events(deleted, settings) -> None:
    names = _names(settings)
    assert deleted["counts"]["events"] == len(deleted["deleted"])
    assert deleted["counts"]["event_keys_tombstoned"] == len(deleted["deleted"])
    with session_factory()() as s:
        # The stored events and their day tables: row by row what B has.
        tables: list[tuple[Any, tuple[str, ...]]] = [
            (Event.__table__, ("event_id", "received_at", "batch_id", "correlation_id")),
            (daily_rollups, ()), (daily_focus, ()), (DailyInteraction.__table__, ()),
            (DailyWorkItem.__table__, ())]
        for table, skip in tables:
            a, b = _rows(s, table, A, names, skip), _rows(s, table, B, names, skip)
            assert a == b, (table.name, sorted(a ^ b)[:5])
        # Keys: B's, plus the deleted events' as tombstones (ids only).
        keys = s.execute(sa.select(EventKey.event_id, EventKey.actor_id).where(
            EventKey.tenant_id == A)).all()
        tombstones = {k for k, actor in keys if actor == deletions.TOMBSTONE_ACTOR}
        assert tombstones == {e["signal_id"] for e in deleted["deleted"]}
        assert len(keys) - len(tombstones) == s.execute(sa.select(sa.func.count()).where(
            EventKey.tenant_id == B)).scalar_one()
        # Features of every scope on the evaluated days, scores and baselines: recomputed,
        # they equal B's (actor features included: the actor's other days stay).
        state_a, state_b = s.get(IngestionState, A), s.get(IngestionState, B)
        assert state_a is not None and state_b is not None
        through = state_b.last_evaluated_day
        assert through is not None and state_a.last_evaluated_day == through
        a, b = (_feature_rows(s, t, names, through) for t in (A, B))
        assert len(a) > 1000 and a == b, sorted(a ^ b)[:6]
        a = _rows(s, Score.__table__, A, names, ("computed_at", "components", "reason"))
        b = _rows(s, Score.__table__, B, names, ("computed_at", "components", "reason"))
        assert a and a == b, sorted(a ^ b)[:6]
        bskip = ("baseline_id", "last_recomputed_at", "algorithm")
        a, b = (_rows(s, Baseline.__table__, t, names, bskip) for t in (A, B))
        assert a and a == b, sorted(a ^ b)[:6]
        # Nothing of the actor's derived from the deleted days is left.
        pseudo = deleted["pseudo"]
        reach = LAST + timedelta(days=27)
        for model in (Anomaly, Signal):
            left = s.execute(sa.select(model).where(
                model.tenant_id == A, model.subject_id == pseudo,
                sa.func.coalesce(model.first_day, model.day) <= reach,
                model.day >= FIRST)).scalars().all()
            assert left == [], model
        assert s.execute(sa.select(SignalVersion).where(
            SignalVersion.signal_id.in_(list(deleted["doomed"])))).all() == []
        # A from-scratch computation over the remaining events agrees with what is stored.
        check = feature_check.check_features(s, A)
        assert check.consistent, check.examples
        job = _job(s, deleted["job_id"])
        assert job.status == "done" and job.counts == deleted["counts"]
        assert job.actor_id == pseudo != ACTOR  # never the raw id
        assert [a.action for a in s.execute(sa.select(AuditEntry).where(
            AuditEntry.correlation_id == deleted["job_id"]).order_by(AuditEntry.id)).scalars()
                ] == ["privacy.deletion_requested", "privacy.deletion_done"]


def _drain_queue(broker_url: str, queue: str) -> list[Any]:
    messages = []
    with Connection(broker_url) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
        channel.close()
    return messages


def test_deleted_signals_are_streamed_once_more_resolved_and_empty(deleted, settings) -> None:
    doomed = deleted["doomed"]
    assert doomed, "the actor had signals to delete"
    with session_factory()() as s:
        rows = s.execute(sa.select(SignalOutbox).where(
            SignalOutbox.signal_id.in_(list(doomed)))).scalars().all()
    # Only the final version of each deleted signal is left in the outbox.
    assert sorted((r.signal_id, r.version) for r in rows) == sorted(
        (sid, v + 1) for sid, v in doomed.items())
    for r in rows:
        assert r.status == "pending"
        assert r.payload["status"] == "resolved" and r.payload["reason"] == "deleted"
        assert r.payload["features_snapshot"] == {} and r.payload["evidence_refs"] == {}
    for q in ("ubi.signals.mmm", "ubi.signals.detection"):
        _drain_queue(settings.broker_url, settings.queue_name(q))
    publisher = SignalPublisher(settings)
    try:
        with session_factory()() as s:
            while stream.drain_signal_outbox(s, publisher, now=clock.utcnow()
                                             + timedelta(days=1)).published:
                s.commit()
            s.commit()
    finally:
        publisher.close()
    mmm = _drain_queue(settings.broker_url, settings.queue_name("ubi.signals.mmm"))
    for m in mmm:  # the stream's contract holds for a deletion's final version too
        stream_messages.validated(m)
    finals = {m.properties["message_id"]: json.loads(m.body) for m in mmm
              if m.properties["message_id"] in {f"{r.signal_id}:{r.version}" for r in rows}}
    assert len(finals) == len(rows)
    assert all(b["status"] == "resolved" and b["reason"] == "deleted"
               and b["features_snapshot"] == {} for b in finals.values())


def test_a_resent_deleted_event_is_not_stored_again(deleted, settings) -> None:
    copy = deleted["deleted"][0]
    alias = Pseudonymiser(settings.pseudonym_secret)
    with session_factory()() as s:
        before = s.execute(sa.select(sa.func.count()).select_from(Event).where(
            Event.tenant_id == A)).scalar_one()
        accepted = batches.accept_batch(s, json.dumps({"events": [copy]}).encode(),
                                       caller_tenant=A, privileged=False, max_batch=10)
        assert accepted.results[0]["status"] == "duplicate"
        outcome = ingest.store_batch(s, batch_id=str(uuid.uuid4()), tenant_id=A,
                                     events_json=json.dumps([copy]),
                                     received_at=clock.utcnow(), correlation_id=None,
                                     pseudonymiser=alias)
        assert (outcome.inserted, outcome.duplicates) == (0, 1)
        after = s.execute(sa.select(sa.func.count()).select_from(Event).where(
            Event.tenant_id == A)).scalar_one()
        s.rollback()
    assert after == before


def test_a_batch_in_flight_during_the_deletion_is_filtered(deleted, settings) -> None:
    """A batch received before the deletion was asked for, stored after it ran: its events in
    scope are not stored (their keys become tombstones); the others are."""
    job = deleted["job_id"]
    with session_factory()() as s:
        asked = _job(s, job).created_at
    at = datetime(2026, 6, 9, 10, tzinfo=UTC)
    from tests.support.envelopes import envelope

    late = envelope(A, actor=ACTOR, occurred_at=at)
    other = envelope(A, actor="eng04", occurred_at=at)
    alias = Pseudonymiser(settings.pseudonym_secret)
    with session_factory()() as s:
        outcome = ingest.store_batch(s, batch_id=str(uuid.uuid4()), tenant_id=A,
                                     events_json=json.dumps([late, other]),
                                     received_at=asked - timedelta(seconds=1),
                                     correlation_id=None, pseudonymiser=alias)
        assert outcome.inserted == 1
        stored = set(s.execute(sa.select(Event.event_id).where(
            Event.tenant_id == A, Event.event_id.in_([late["signal_id"],
                                                      other["signal_id"]]))).scalars())
        tomb = s.execute(sa.select(EventKey.actor_id).where(
            EventKey.tenant_id == A, EventKey.event_id == late["signal_id"])).scalar_one()
        s.rollback()
    assert stored == {other["signal_id"]} and tomb == deletions.TOMBSTONE_ACTOR


def test_a_job_left_running_runs_again_and_a_done_one_does_not(deleted, settings) -> None:
    from ubi.tasks.maintenance import run_deletion

    job_id = _delete(settings)  # the same scope again: nothing left, still a full run
    with session_factory()() as s:  # a worker died half-way: running, nothing committed
        job = _job(s, job_id)
        job.status, job.started_at = "running", clock.utcnow()
        s.commit()
    result = run_deletion.apply(kwargs={"job_id": job_id}).get()
    assert result["counts"]["events"] == 0 and result["counts"]["features_recomputed"] > 0
    with session_factory()() as s:
        job = _job(s, job_id)
        assert job.status == "done" and job.finished_at is not None
    assert deletions.run_deletion(job_id) == result["counts"]


def test_whole_days_only(db_session) -> None:
    with pytest.raises(ValueError, match="time_from"):
        deletions.request_deletion(db_session, tenant_id=A, actor_id=None,
                                   time_from=T_FROM + timedelta(hours=3), time_to=None,
                                   requested_by="t", reason="test")
    with pytest.raises(ValueError, match="time_to"):
        deletions.request_deletion(db_session, tenant_id=A, actor_id=None, time_from=T_TO,
                                   time_to=T_FROM, requested_by="t", reason="test")


def _post(client: Any, token: str, body: Any) -> Any:
    return client.post("/v1/ubi/privacy/deletions", json=body,
                       headers={"Authorization": f"Bearer {token}"})


def test_the_api_takes_privacy_admins_of_the_tenant(client, tokens, db_session, broker,
                                                    settings) -> None:
    body = {"tenant_id": "acme", "actor_id": "alice",
            "time_range": {"from": "2026-06-01", "to": "2026-06-02"}}
    assert _post(client, tokens("acme", "ubi:read:actor", "ubi:write:events"),
                 body).status_code == 403
    assert _post(client, tokens("other", "ubi:admin:privacy"), body).status_code == 403
    bad = _post(client, tokens("acme", "ubi:admin:privacy"),
                {**body, "time_range": {"from": "2026-06-03", "to": "2026-06-02"}})
    assert bad.status_code == 422 and "from" in json.dumps(bad.json)
    assert _post(client, tokens("acme", "ubi:admin:privacy"),
                 {"actor_id": "alice"}).status_code == 422

    resp = _post(client, tokens("acme", "ubi:admin:privacy", sub="governance"), body)
    assert resp.status_code == 202, resp.json
    job = resp.json
    assert job["status"] == "queued" and job["actor_scoped"] is True
    assert job["time_from"].startswith("2026-06-01T00:00") and job["time_to"].startswith(
        "2026-06-03T00:00")
    assert "alice" not in json.dumps(job)
    stored = db_session.get(DeletionJob, job["job_id"])
    alias = Pseudonymiser(settings.pseudonym_secret)
    assert stored.actor_id == alias.pseudonym("acme", "alice")
    audit = db_session.execute(sa.select(AuditEntry).where(
        AuditEntry.action == "privacy.deletion_requested")).scalar_one()
    assert audit.principal == "governance" and "alice" not in json.dumps(audit.details)
    # Privileged operators may name any tenant.
    assert _post(client, tokens("ops", "product_ops"), {"tenant_id": "acme"}
                 ).status_code == 202

    url = f"/v1/ubi/privacy/deletions/{job['job_id']}"
    admin = {"Authorization": "Bearer " + tokens("acme", "ubi:admin:privacy")}
    got = client.get(url, headers=admin)
    assert got.status_code == 200 and got.json["status"] == "queued"
    assert client.get(url, headers={"Authorization": "Bearer " + tokens(
        "other", "ubi:admin:privacy")}).status_code == 404
    assert client.get(url, headers={"Authorization": "Bearer " + tokens(
        "acme", "ubi:read:tenant")}).status_code == 403
    deletions.run_deletion(job["job_id"])  # (a tenant without data: nothing to delete)
    got = client.get(url, headers=admin)
    assert got.json["status"] == "done" and got.json["counts"]["events"] == 0


def test_a_whole_tenant_deletion_of_days_empties_their_partitions(db_session, settings
                                                                   ) -> None:
    """The retention job's call: a tenant's whole days. A day partition holding only that
    tenant's rows is truncated, one shared with another tenant loses only the tenant's rows;
    the keys stay as tombstones, and the days outside the range are untouched."""
    from tests.support.envelopes import envelope
    from ubi.store import partitions

    days = [date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 3)]
    solo = [envelope("solo", actor=f"p{i}", occurred_at=datetime.combine(
        d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10 + i))
        for d in days for i in range(3)]
    shared = [envelope("other", actor="q", occurred_at=datetime(2026, 4, 2, 9, tzinfo=UTC))]
    run_pipeline(settings, "solo", solo)
    run_pipeline(settings, "other", shared)
    assert set(days) <= partitions.existing_partitions(db_session)
    with session_factory()() as s:
        job_id = deletions.request_deletion(
            s, tenant_id="solo", actor_id=None, time_from=datetime(2026, 4, 1, tzinfo=UTC),
            time_to=datetime(2026, 4, 3, tzinfo=UTC), requested_by="retention",
            reason="retention")
        s.commit()
    counts = deletions.run_deletion(job_id)
    assert counts["events"] == counts["event_keys_tombstoned"] == 6
    left = db_session.execute(sa.select(Event.tenant_id, Event.event_date)).all()
    assert sorted(left) == [("other", days[1]), ("solo", days[2]), ("solo", days[2]),
                            ("solo", days[2])]
    rollups = db_session.execute(sa.select(daily_rollups.c.day).where(
        daily_rollups.c.tenant_id == "solo")).scalars().all()
    assert set(rollups) == {days[2]}
    assert db_session.execute(sa.select(sa.func.count()).where(
        EventKey.tenant_id == "solo", EventKey.actor_id == deletions.TOMBSTONE_ACTOR)
    ).scalar_one() == 6
