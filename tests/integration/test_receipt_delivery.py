"""Receipts reach ERIS (SPEC §13, issue 20): receipts written by the real code are delivered by
real HTTP to the ERIS stand-in, which verifies every signature against the key set UBI serves;
ERIS down opens the breaker and the receipts wait; refusals and the 24 h window make receipts
dead, and the CLI lists and re-drives them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.integration.conftest import ERIS_RESET_SECONDS
from ubi import clock
from ubi.cli import main
from ubi.devservers.eris import ErisStandIn
from ubi.integrations import breakers
from ubi.integrations import eris as eris_client
from ubi.models import ReceiptOutbox, session_factory
from ubi.services import configs, receipts

TENANT = "eristest"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def deliver(settings: Any) -> receipts.DeliveryReport:
    with session_factory()() as s:
        report = receipts.deliver_due(s, eris_client.ErisClient(settings))
        s.commit()
    return report


def write_config_receipts(n: int) -> list[str]:
    """``n`` config writes through the service the API calls, each with its receipt."""
    ids = []
    for i in range(n):
        with session_factory()() as s:
            change = configs.change_config(s, TENANT, {"stale_after_seconds": 3600 + 60 * i},
                                           author="lead", now=clock.utcnow())
            s.commit()
        ids.append(change.receipt_id)
    return ids


def rows() -> dict[str, ReceiptOutbox]:
    with session_factory()() as s:
        found = s.execute(sa.select(ReceiptOutbox)).scalars().all()
        s.expunge_all()
    return {r.receipt_id: r for r in found}


def emitted(status: str) -> float:
    return REGISTRY.get_sample_value("ubi_receipt_emission_total",
                                     {"tenant_id": TENANT, "status": status}) or 0.0


def breaker_gauge() -> float | None:
    return REGISTRY.get_sample_value("ubi_circuit_breaker_state", {"service": "eris"})


def received(eris: ErisStandIn) -> dict[str, Any]:
    return requests.get(f"{eris.url}/_received", timeout=5).json()


def fault(eris: ErisStandIn, **body: Any) -> None:
    requests.post(f"{eris.url}/_faults", json=body, timeout=5).raise_for_status()


def test_receipts_of_api_writes_are_delivered_once_each_and_verified(
        client, tokens, eris, eris_settings, monkeypatch) -> None:
    writer = tokens(TENANT, "ubi:write:config")
    good = client.put(f"/v1/ubi/config/{TENANT}", headers=auth(writer),
                      json={"stale_after_seconds": 7200})
    bad = client.put(f"/v1/ubi/config/{TENANT}", headers=auth(writer), json={"colour": 1})
    assert good.status_code == 200 and bad.status_code == 400
    ids = {good.json["receipt_id"], *write_config_receipts(2)}
    before = emitted("delivered")

    # Without UBI_ERIS_URL the beat task leaves them in the outbox.
    from ubi.tasks import receipts as receipt_tasks

    assert "skipped" in receipt_tasks.deliver_receipts()
    assert {r.status for r in rows().values()} == {"pending"}

    # With it, the same task delivers them; a second run sends nothing again.
    monkeypatch.setattr(receipt_tasks, "get_settings", lambda: eris_settings)
    assert receipt_tasks.deliver_receipts() == {"delivered": 4, "duplicate": 0, "retry": 0,
                                               "dead": 0}
    assert receipt_tasks.deliver_receipts()["delivered"] == 0
    seen = received(eris)
    assert sorted(a["receipt_id"] for a in seen["calls"]) == sorted(seen["stored"])
    assert all(a["status"] == 201 and a["verified"] for a in seen["calls"])
    assert ids < set(seen["stored"]) and len(seen["stored"]) == 4
    stored = rows()
    assert {r.status for r in stored.values()} == {"delivered"}
    assert all(r.delivered_at is not None and r.attempts == 1 for r in stored.values())
    assert emitted("delivered") - before == 4
    # ERIS answers for them: by id and by search.
    one = requests.get(f"{eris.url}/v1/evidence/receipts/{good.json['receipt_id']}", timeout=5)
    assert one.status_code == 200 and one.json()["decision"]["status"] == "pass"
    found = requests.post(f"{eris.url}/v1/evidence/search",
                          json={"tenant_id": TENANT, "resource_type": "config"}, timeout=5)
    assert len(found.json()["receipts"]) == 4


def test_signal_receipts_with_any_text_verify_at_eris(eris, eris_settings) -> None:
    """Non-ASCII text, nested keys out of order, numbers: ERIS's canonical form (written
    from SPEC §13 in the stand-in) and UBI's signer agree."""
    receipt_id = receipts.signal_receipt_id("sig-1", 3)
    with session_factory()() as s:
        receipt = receipts.build_receipt(
            receipt_id=receipt_id, tenant_id=TENANT, resource_type="signal",
            evaluation_point="post-deploy", config_version=4,
            snapshot_hash="sha256:" + "a" * 64,
            inputs={"z": {"b": 1, "a": [3, 1.5, None]}, "subject_id": "équipe-Zürich ✓"},
            decision={"status": "warn", "rationale": "Überstunden — 3σ über der Basis",
                      "badges": ["burnout_risk", "WARN"]},
            result={"signal_id": "sig-1", "version": 3, "score": 0.734},
            actor_type="service", repo_id=f"ubi:{TENANT}", timestamp=clock.utcnow())
        receipts.enqueue_receipt(s, receipt, resource_id="sig-1:3", now=clock.utcnow())
        s.commit()
    assert deliver(eris_settings).delivered == 1
    [attempt] = received(eris)["calls"]
    assert attempt["verified"] and attempt["receipt_id"] == receipt_id
    stored = requests.get(f"{eris.url}/v1/evidence/receipts/{receipt_id}", timeout=5).json()
    assert stored["decision"]["rationale"] == "Überstunden — 3σ über der Basis"


def test_a_duplicate_counts_as_delivered(eris, eris_settings) -> None:
    [receipt_id] = write_config_receipts(1)
    payload = rows()[receipt_id].payload
    assert requests.post(f"{eris.url}/v1/evidence/receipts", json=payload,
                         timeout=5).status_code == 201  # ERIS got it, UBI did not hear back
    before = emitted("duplicate")
    assert deliver(eris_settings).duplicate == 1
    assert rows()[receipt_id].status == "delivered"
    assert emitted("duplicate") - before == 1
    assert [a["status"] for a in received(eris)["calls"]] == [201, 409]


def test_eris_down_opens_the_breaker_and_receipts_wait_then_arrive_once(
        eris, eris_settings, shared_clock) -> None:
    ids = write_config_receipts(6)
    fault(eris, mode="down")
    before_retry = emitted("retry")

    report = deliver(eris_settings)  # three failures open the breaker; the rest wait
    assert (report.retry, report.delivered) == (6, 0)
    assert len(received(eris)["calls"]) == 3
    assert breakers.breaker_state("eris", eris_settings) == "open"
    assert breaker_gauge() == 2.0
    assert emitted("retry") - before_retry == 6
    waiting = rows()
    assert all(r.status == "pending" and r.first_attempt_at is not None
               for r in waiting.values())
    assert sum("unreachable" in (r.last_error or "") for r in waiting.values()) == 3
    assert sum(r.last_error == "circuit breaker open" for r in waiting.values()) == 3
    # Readiness: degraded, not down.
    from ubi.web.app import create_app

    ready = create_app(eris_settings).test_client().get("/v1/ubi/ready")
    assert ready.status_code == 200 and ready.json is not None
    assert ready.json["status"] == "degraded" and ready.json["checks"]["eris"]["degraded"]

    shared_clock.advance(timedelta(hours=1))  # every receipt due again
    assert deliver(eris_settings).retry == 6  # still open: ERIS sees nothing
    assert len(received(eris)["calls"]) == 3

    time.sleep(ERIS_RESET_SECONDS + 1.2)  # system clock; whole seconds in Redis
    shared_clock.advance(timedelta(hours=1))
    deliver(eris_settings)  # one probe, which fails: open again
    assert len(received(eris)["calls"]) == 4

    requests.delete(f"{eris.url}/_faults", timeout=5).raise_for_status()
    time.sleep(ERIS_RESET_SECONDS + 1.2)
    shared_clock.advance(timedelta(hours=1))
    assert deliver(eris_settings).delivered == 6
    assert breakers.breaker_state("eris", eris_settings) == "closed"
    assert breaker_gauge() == 0.0
    seen = received(eris)
    assert sorted(seen["stored"]) == sorted(ids)
    assert sorted(a["receipt_id"] for a in seen["calls"] if a["status"] == 201) == sorted(ids)
    assert {r.status for r in rows().values()} == {"delivered"}
    back = create_app(eris_settings).test_client().get("/v1/ubi/ready").json
    assert back is not None and back["status"] == "ready"


def test_429_is_retried_after_its_retry_after(eris, eris_settings) -> None:
    [receipt_id] = write_config_receipts(1)
    fault(eris, mode="429", retry_after=600, next_n=1)
    start = clock.utcnow()
    assert deliver(eris_settings).retry == 1
    row = rows()[receipt_id]
    assert row.next_attempt_at >= start + timedelta(seconds=600)
    assert breakers.breaker_state("eris", eris_settings) == "closed"  # an answer, not a failure


def test_a_slow_eris_times_out_and_the_receipt_waits(eris, eris_settings) -> None:
    [receipt_id] = write_config_receipts(1)
    fault(eris, mode="slow", delay=1.5, next_n=1)  # UBI_HTTP_TIMEOUT is 1 s here
    assert deliver(eris_settings).retry == 1
    row = rows()[receipt_id]
    assert row.status == "pending" and row.last_error == "timeout after 1 s"


def test_a_refused_receipt_is_dead_at_once_listed_and_redriven(eris, eris_settings) -> None:
    [receipt_id] = write_config_receipts(1)
    fault(eris, mode="400", next_n=1)
    before = emitted("dead")
    assert deliver(eris_settings).dead == 1
    row = rows()[receipt_id]
    assert row.status == "dead" and "injected fault" in (row.last_error or "")
    assert emitted("dead") - before == 1

    runner = CliRunner()
    listed = runner.invoke(main, ["receipts", "dead", "--tenant", TENANT, "--json"])
    assert listed.exit_code == 0, listed.output
    [dead] = json.loads(listed.output)
    assert (dead["receipt_id"], dead["resource_type"], dead["attempts"]) == (
        receipt_id, "config", 1)
    assert "injected fault" in dead["last_error"]
    assert "no dead receipts" in runner.invoke(main, ["receipts", "dead", "--tenant",
                                                      "other"]).output

    redriven = runner.invoke(main, ["receipts", "retry", receipt_id])
    assert redriven.exit_code == 0 and receipt_id in redriven.output
    row = rows()[receipt_id]
    assert (row.status, row.attempts, row.first_attempt_at) == ("pending", 0, None)
    assert deliver(eris_settings).delivered == 1
    assert received(eris)["stored"] == [receipt_id]
    assert runner.invoke(main, ["receipts", "retry", receipt_id]).exit_code == 1  # not dead


def test_receipts_failing_for_24_hours_are_dead(eris, eris_settings, shared_clock) -> None:
    [receipt_id] = write_config_receipts(1)
    fault(eris, mode="5xx", next_n=2)
    assert deliver(eris_settings).retry == 1
    first = rows()[receipt_id].first_attempt_at
    assert first is not None
    shared_clock.advance(timedelta(hours=24, minutes=1))
    assert deliver(eris_settings).dead == 1
    row = rows()[receipt_id]
    assert row.status == "dead" and "HTTP 503" in (row.last_error or "")
    assert row.first_attempt_at == first and row.attempts == 2
    assert CliRunner().invoke(main, ["receipts", "retry", "--all"]).exit_code == 0
    assert deliver(eris_settings).delivered == 1


def test_verify_checks_a_receipt_file_against_the_served_keys(ubi_url, clean_db, tmp_path) -> None:
    [receipt_id] = write_config_receipts(1)
    payload = rows()[receipt_id].payload
    good = tmp_path / "receipt.json"
    good.write_text(json.dumps(payload))
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**payload, "tenant_id": "someone-else"}))
    runner = CliRunner()
    keys_url = f"{ubi_url}/receipts/public-key"
    ok = runner.invoke(main, ["receipts", "verify", str(good), "--keys-url", keys_url])
    assert ok.exit_code == 0 and "ok" in ok.output
    assert runner.invoke(main, ["receipts", "verify", str(good)]).exit_code == 0
    bad = runner.invoke(main, ["receipts", "verify", str(tampered), "--keys-url", keys_url])
    assert bad.exit_code == 1 and "does not verify" in bad.output


def test_the_stand_in_rejects_a_bad_signature(eris, eris_settings) -> None:
    [receipt_id] = write_config_receipts(1)
    payload = {**rows()[receipt_id].payload, "degraded": True}
    resp = requests.post(f"{eris.url}/v1/evidence/receipts", json=payload, timeout=5)
    assert resp.status_code == 400 and "does not verify" in resp.json()["reason"]
    assert received(eris)["stored"] == []


@pytest.mark.slow
def test_a_worker_of_the_receipts_queue_runs_the_delivery(eris, eris_settings, broker,
                                                          monkeypatch) -> None:
    """The beat entry's message, consumed from the real ``receipts`` queue by a real worker."""
    import celeryconfig
    from tests.support.workers import running_worker
    from ubi.tasks import names
    from ubi.tasks import receipts as receipt_tasks

    entry = celeryconfig.beat_schedule["deliver-receipts"]
    assert entry["task"] == names.DELIVER_RECEIPTS and entry["options"]["expires"] <= 5
    ids = write_config_receipts(2)
    monkeypatch.setattr(receipt_tasks, "get_settings", lambda: eris_settings)
    with running_worker("receipts"):
        result = receipt_tasks.deliver_receipts.apply_async(  # what beat sends
            expires=entry["options"]["expires"], ignore_result=False)
        assert result.get(timeout=30)["delivered"] == 2
    assert sorted(received(eris)["stored"]) == sorted(ids)
