"""Ingestion through the API and a real ingest worker on PostgreSQL and RabbitMQ (SPEC §3)."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.support.envelopes import envelope, post_events, wait_for_batch
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import Batch, Event, EventKey, daily_rollups


def _processed(client) -> Counter[tuple[str, str, str]]:
    """``ubi_events_processed_total`` by (tenant_id, event_type, status), as scraped."""
    page = client.get("/v1/ubi/metrics").data.decode()
    out: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "ubi_events_processed_total":
                labels = sample.labels
                out[(labels["tenant_id"], labels["event_type"], labels["status"])] += int(
                    sample.value)
    return out


def _count(session, model) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def test_mixed_batch_reports_each_item_and_stores_exactly_the_valid_ones(
        client, tokens, db_session, ingest_worker) -> None:
    token = tokens("acme", "ubi:write:events")
    good = [envelope(actor="alice"), envelope(actor="bob", signal_type="pr_merged")]
    bad_ts = envelope(occurred_at=None)
    bad_ts["occurred_at"] = "yesterday at noon"
    no_id = envelope()
    del no_id["signal_id"]
    wrong_major = envelope(schema_version="2.0")
    unknown_kind = envelope(signal_kind="telepathy")
    other_tenant = envelope("globex")
    unknown_type = envelope(signal_type="coffee_brewed")
    duplicate = dict(good[0])
    metric = envelope(signal_kind="metric", signal_type="cpu_load")
    items = [*good, bad_ts, no_id, wrong_major, unknown_kind, other_tenant, unknown_type,
             duplicate, metric]
    before = _processed(client)
    resp = post_events(client, token, items)
    assert resp.status_code == 202, resp.json
    results = resp.json["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "rejected",
                                              "rejected", "rejected", "rejected", "rejected",
                                              "duplicate", "accepted"]
    codes = {r["index"]: r.get("error_code") for r in results}
    assert codes[2] == "SCHEMA_VIOLATION" and "occurred_at" in results[2]["error_message"]
    assert codes[3] == "SCHEMA_VIOLATION" and "signal_id" in results[3]["error_message"]
    assert results[3]["signal_id"] is None
    assert codes[4] == "VALIDATION_ERROR" and "major 2" in results[4]["error_message"]
    assert codes[5] == "SCHEMA_VIOLATION" and "signal_kind" in results[5]["error_message"]
    assert codes[6] == "TENANT_ISOLATION_VIOLATION"
    assert codes[7] == "SIGNAL_TYPE_NOT_ALLOWED"
    assert results[2]["signal_id"] == bad_ts["signal_id"]
    assert resp.json["summary"] == {"total": 10, "accepted": 3, "duplicates": 1, "rejected": 6}

    status = wait_for_batch(client, token, resp.json["batch_id"])
    assert status["status"] == "done"
    assert status["counts"]["inserted"] == 2
    assert status["counts"]["counted_only"] == 1
    assert status["dropped"]["unsupported_signal_kind"] == 1

    stored = db_session.execute(sa.select(Event.event_id, Event.tenant_id, Event.event_type)
                                ).all()
    assert sorted(stored) == sorted([(good[0]["signal_id"], "acme", "commit_created"),
                                     (good[1]["signal_id"], "acme", "pr_merged")])

    # SPEC §11, with bounded labels: a rejected item counts under the caller's tenant (not
    # the one it claims) and under its canonical type or "other" (not whatever it sent).
    after = _processed(client)
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta == {
        ("acme", "commit_created", "stored"): 1, ("acme", "pr_merged", "stored"): 1,
        ("acme", "metric", "counted"): 1, ("acme", "-", "duplicate"): 1,
        ("acme", "-", "rejected"): 3,  # bad timestamp, no signal_id, unknown signal_kind
        ("acme", "commit_created", "rejected"): 2,  # wrong major, other tenant
        ("acme", "other", "rejected"): 1}  # coffee_brewed


def test_nul_characters_are_rejected_per_item_and_lose_no_neighbour(
        client, tokens, db_session, ingest_worker) -> None:
    """PostgreSQL stores a NUL character in neither text nor jsonb: such an item is rejected
    with the place it was found, instead of failing its whole batch in the worker (or the
    request, when it was in the signal id)."""
    token = tokens("acme", "ubi:write:events")
    good = envelope(actor="alice", payload={"outcome": "a\\u0000b is fine: escaped"})
    bad = [envelope(payload={"outcome": "a\x00b"}), envelope(actor="bo\x00b"),
           envelope(signal_id="id-\x00"), envelope(payload={"out\x00come": 1}),
           envelope(resource={"repo": ["acme/app", "\x00"]}), envelope(trace_id="\x00")]
    resp = post_events(client, token, [good, *bad])
    assert resp.status_code == 202, resp.json
    results = resp.json["results"]
    assert [r["status"] for r in results] == ["accepted"] + ["rejected"] * len(bad)
    assert {r["error_code"] for r in results[1:]} == {"SCHEMA_VIOLATION"}
    assert [r["error_message"].rsplit("`", 2)[1] for r in results[1:]] == [
        "$.payload.outcome", "$.actor_id", "$.signal_id", "$.payload.'out\\x00come'",
        "$.resource.repo[1]", "$.trace_id"]
    status = wait_for_batch(client, token, resp.json["batch_id"])
    assert status["status"] == "done" and status["counts"]["inserted"] == 1
    stored = db_session.execute(sa.select(Event.event_id, Event.properties)).all()
    assert stored == [(good["signal_id"], {"outcome": "a\\u0000b is fine: escaped"})]


def test_numbers_the_store_cannot_hold_are_rejected_per_item(
        client, tokens, db_session, ingest_worker) -> None:
    """``sequence_no`` is a 64-bit column: a larger one was accepted and then failed its whole
    batch in the worker. Numbers inside the payload are JSON and may be any size."""
    token = tokens("acme", "ubi:write:events")
    too_big = envelope(actor="bob")
    too_big["sequence_no"] = 2 ** 63
    largest = envelope(actor="alice")
    largest["sequence_no"] = 2 ** 63 - 1
    huge_payload = envelope(actor="carol", payload={"duration_ms": 2 ** 70})
    resp = post_events(client, token, [largest, too_big, huge_payload])
    assert [r["status"] for r in resp.json["results"]] == ["accepted", "rejected", "accepted"]
    assert "$.sequence_no" in resp.json["results"][1]["error_message"]
    status = wait_for_batch(client, token, resp.json["batch_id"])
    assert status["status"] == "done" and status["counts"]["inserted"] == 2
    assert sorted(db_session.execute(sa.select(Event.event_id)).scalars()) == sorted(
        [largest["signal_id"], huge_payload["signal_id"]])


def test_same_batch_posted_twice_is_stored_once(client, tokens, db_session, settings,
                                                ingest_worker) -> None:
    token = tokens("acme", "ubi:write:events")
    items = [envelope(actor=f"dev{i % 3}", signal_type=t)
             for i, t in enumerate(["commit_created", "build_failed", "build_succeeded",
                                    "pr_reviewed", "commit_created", "test_failed"])]
    first = post_events(client, token, items)
    wait_for_batch(client, token, first.json["batch_id"])
    rollups_once = db_session.execute(sa.select(daily_rollups).order_by(
        daily_rollups.c.actor_id, daily_rollups.c.day)).all()
    second = post_events(client, token, items)
    assert second.json["summary"]["duplicates"] == 6
    assert second.json["summary"]["accepted"] == 0
    assert wait_for_batch(client, token, second.json["batch_id"])["status"] == "done"
    db_session.expire_all()
    assert _count(db_session, Event) == 6 and _count(db_session, EventKey) == 6
    rollups_twice = db_session.execute(sa.select(daily_rollups).order_by(
        daily_rollups.c.actor_id, daily_rollups.c.day)).all()
    assert [r._mapping["event_count"] for r in rollups_twice] == [2, 2, 2]
    strip = lambda rows: [{k: v for k, v in r._mapping.items() if k != "updated_at"}  # noqa: E731
                          for r in rows]
    assert strip(rollups_twice) == strip(rollups_once)
    # Pseudonyms, never raw actor ids, in the store.
    alias = Pseudonymiser(settings.pseudonym_secret).pseudonym("acme", "dev0")
    assert {r._mapping["actor_id"] for r in rollups_twice} >= {alias}
    assert "dev0" not in {r._mapping["actor_id"] for r in rollups_twice}


def test_batch_status_is_tenant_bound_and_404_for_unknown(client, tokens, db_session,
                                                          ingest_worker) -> None:
    token = tokens("acme", "ubi:write:events")
    resp = post_events(client, token, [envelope()])
    batch_id = resp.json["batch_id"]
    wait_for_batch(client, token, batch_id)
    other = tokens("globex", "ubi:write:events")
    assert client.get(f"/v1/ubi/batches/{batch_id}",
                      headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get("/v1/ubi/batches/nope",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 404
    reader = tokens("acme", "ubi:read:tenant")
    assert client.get(f"/v1/ubi/batches/{batch_id}",
                      headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    assert db_session.get(Batch, ("acme", batch_id)).inserted == 1


def test_whole_request_errors(client, tokens, settings, database) -> None:
    token = tokens("acme", "ubi:write:events")
    auth = {"Authorization": f"Bearer {token}"}
    resp = client.post("/v1/ubi/events", data=b"{not json", content_type="application/json",
                       headers=auth)
    assert resp.status_code == 400 and "JSON" in resp.json["message"]
    resp = client.post("/v1/ubi/events", data=b'"a string"', content_type="application/json",
                       headers=auth)
    assert resp.status_code == 400
    resp = client.post("/v1/ubi/events", data=b'{"events": []}',
                       content_type="application/json", headers=auth)
    assert resp.status_code == 400 and "no events" in resp.json["message"]
    resp = client.post("/v1/ubi/events", data=b"[]", content_type="application/json",
                       headers=auth)
    assert resp.status_code == 400
    resp = client.post("/v1/ubi/events", data=b"a,b", content_type="text/csv", headers=auth)
    assert resp.status_code == 415 and resp.json["code"] == "unsupported_media_type"
    too_many = [envelope() for _ in range(settings.max_batch + 1)]
    resp = post_events(client, token, too_many)
    assert resp.status_code == 413 and str(settings.max_batch) in resp.json["message"]
    assert post_events(client, tokens("acme", "ubi:read:tenant"), [envelope()]).status_code \
        == 403
    assert client.post("/v1/ubi/events", data=b"[]",
                       content_type="application/json").status_code == 401


def test_bare_array_body_and_privileged_cross_tenant(client, tokens, db_session,
                                                     ingest_worker) -> None:
    ops = tokens(None, "product_ops")
    items = [envelope("acme"), envelope("globex")]
    resp = post_events(client, ops, items, wrap=False)
    assert resp.status_code == 202 and resp.json["summary"]["accepted"] == 2
    wait_for_batch(client, ops, resp.json["batch_id"])
    assert sorted(db_session.execute(sa.select(Event.tenant_id)).scalars()) == ["acme", "globex"]


def test_queue_size_gauge_is_the_stores_backlog(client, settings, db_session) -> None:
    """``ubi_queue_size`` (SPEC §11) counts accepted, unprocessed events per tenant at scrape
    time, whichever process accepted or stored them, and falls to 0 once they are stored."""
    import json
    import re

    from ubi import clock
    from ubi.models import session_factory
    from ubi.services import batches, ingest

    def gauge() -> dict[str, float]:
        page = client.get("/v1/ubi/metrics").data.decode()
        return {t: float(v) for t, v in re.findall(
            r'^ubi_queue_size\{tenant_id="([^"]+)"\} (\S+)$', page, re.M)}

    items = [envelope(actor=f"dev{i}") for i in range(5)]
    with session_factory()() as s:  # accepted as the API does, not yet processed
        accepted = batches.accept_batch(s, json.dumps(items).encode(), caller_tenant="acme",
                                       privileged=False, max_batch=settings.max_batch)
        s.commit()
    assert gauge() == {"acme": 5.0}
    message = accepted.message
    assert message is not None
    with session_factory()() as s:  # what the ingest worker does with the message
        assert ingest.claim_batch(s, accepted.batch_id, "acme", None, clock.utcnow())
        s.commit()
    assert gauge() == {"acme": 5.0}  # processing still counts
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=accepted.batch_id, tenant_id="acme",
                           events_json=message["events_json"], received_at=clock.utcnow(),
                           correlation_id=None,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    assert gauge() == {"acme": 0.0}


def test_a_batch_never_published_is_marked_failed_and_still_stored_if_it_arrives(
        client, tokens, settings, db_session, shared_clock) -> None:
    """The web committed a batch and died before publishing it (the client got no 202): the
    sweep marks it failed with the reason after the bound, visible in ``GET /batches/{id}``
    and counted; a message that turns up after all is still stored."""
    import json
    from datetime import timedelta

    from prometheus_client import REGISTRY

    from ubi import clock
    from ubi.models import session_factory
    from ubi.services import batches, ingest
    from ubi.tasks.maintenance import expire_unqueued_batches

    def unqueued() -> float:
        return REGISTRY.get_sample_value("ubi_batches_unqueued_total",
                                         {"tenant_id": "acme"}) or 0.0

    before = unqueued()
    items = [envelope(actor=f"dev{i}") for i in range(3)]
    with session_factory()() as s:  # what the view commits before it publishes
        accepted = batches.accept_batch(s, json.dumps(items).encode(), caller_tenant="acme",
                                       privileged=False, max_batch=settings.max_batch)
        s.commit()
    assert accepted.message is not None
    reader = {"Authorization": f"Bearer {tokens('acme', 'ubi:write:events')}"}

    shared_clock.advance(batches.UNQUEUED_BATCH_BOUND - timedelta(minutes=1))
    assert expire_unqueued_batches.apply().get() == {}  # within the bound: left alone
    shared_clock.advance(timedelta(minutes=2))
    assert expire_unqueued_batches.apply().get() == {"acme": 1}
    status = client.get(f"/v1/ubi/batches/{accepted.batch_id}", headers=reader).json
    assert status["status"] == "failed" and status["error"].startswith("not queued: no ingest")
    assert unqueued() == before + 1
    assert expire_unqueued_batches.apply().get() == {}  # counted once

    # The message arrives after all: the batch is stored and done.
    with session_factory()() as s:
        assert ingest.claim_batch(s, accepted.batch_id, "acme", None, clock.utcnow())
        s.commit()
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=accepted.batch_id, tenant_id="acme",
                           events_json=accepted.message["events_json"],
                           received_at=clock.utcnow(), correlation_id=None,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    status = client.get(f"/v1/ubi/batches/{accepted.batch_id}", headers=reader).json
    assert (status["status"], status["counts"]["inserted"]) == ("done", 3)
    assert _count(db_session, Event) == 3


def test_an_open_ingestion_gap_is_on_the_metrics_page(client, db_session, shared_clock) -> None:
    """``ubi_ingestion_gap_seconds{tenant_id}`` (the alert UbiIngestionGap reads it) is the
    age of the tenant's open gap, read from the store at scrape time; 0 without one."""
    import re
    from datetime import timedelta

    from ubi import clock
    from ubi.models import IngestionState

    now = clock.utcnow()
    for tenant_id, since in (("acme", now - timedelta(minutes=10)), ("beta", None)):
        db_session.add(IngestionState(tenant_id=tenant_id, gap_open_since=since, events_total=0,
                                      pending_events=0, updated_at=now))
    db_session.commit()
    page = client.get("/v1/ubi/metrics").data.decode()
    gaps = {t: float(v) for t, v in re.findall(
        r'^ubi_ingestion_gap_seconds\{tenant_id="([^"]+)"\} (\S+)$', page, re.M)}
    assert gaps["beta"] == 0.0 and 600.0 <= gaps["acme"] < 660.0
