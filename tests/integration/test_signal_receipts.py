"""What detection's persistence owes ERIS for a team signal: its receipt (SPEC §13) and, for
evidence of 1 KB or more, the evidence, while the signal keeps the handle (SPEC §5.6).

A team signal whose evidence is over the limit is persisted by detection's own persistence
step: the stored row, its version snapshot, the stream's outbox payload and its receipt all
carry the handle; the blob waits in the ERIS outbox and is delivered by the receipts drain to
the ERIS stand-in, which checks its SHA-256 and answers it by handle.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.integration.test_receipt_delivery import deliver, received
from ubi.analytics.calendar import day_number
from ubi.analytics.explain import EVIDENCE_EMBED_LIMIT, build_evidence, evidence_size
from ubi.analytics.signal_lifecycle import Signal, SignalChange
from ubi.analytics.tenant_config import TenantConfig
from ubi.devservers.eris import ErisStandIn
from ubi.models import ReceiptOutbox, SignalOutbox, SignalVersion, session_factory
from ubi.models import Signal as SignalRow
from ubi.services import detection, evidence, receipts

TENANT = "evidencetest"
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def big_evidence() -> dict[str, Any]:
    members = [f"{i:08x}-0000-5000-8000-{i:012x}" for i in range(24)]
    found = build_evidence(members, members[:12], {"counts": {"build_failed": 40},
                                                   "from": "2026-02-25", "to": "2026-03-03"},
                           {"build_failure_rate.7d": 0.61})
    assert evidence_size(found) >= EVIDENCE_EMBED_LIMIT
    return found


def team_signal(refs: dict[str, Any], severity: str = "WARN") -> Signal:
    day = day_number(NOW.date())
    return Signal(signal_id="5e6f0000-0000-5000-8000-000000000001", tenant_id=TENANT,
                  actor_scope="team", subject_id="team-a", dimension="delivery_flow",
                  signal_class="build_instability", signal_type="risk", score=0.8,
                  severity=severity, confidence=0.9, status="active",
                  reason="build_failure_rate 7d rose to 0.61", evidence_refs=refs,
                  features_snapshot={"build_failure_rate.7d": 0.61}, intent=None,
                  expected_outcome=None, created_at=NOW, updated_at=NOW, resolved_at=None,
                  version=1, first_day=day, last_fired_day=day)


def persist(sig: Signal) -> None:
    analysis = SimpleNamespace(tenant_id=TENANT, signals=SimpleNamespace(
        changes=[SignalChange("created", sig)], touched=[]))
    with session_factory()() as s:
        detection._persist_signals(s, analysis, TenantConfig.default(),  # type: ignore[arg-type]
                                   {}, "corr-1", NOW, detection.DetectOutcome(TENANT))
        s.commit()


def test_big_evidence_is_stored_with_eris_and_the_signal_keeps_its_handle(
        eris: ErisStandIn, eris_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence, "get_settings", lambda: eris_settings)
    refs = big_evidence()
    persist(team_signal(refs))
    persist(team_signal(refs))  # a re-run: still one blob

    with session_factory()() as s:
        row = s.execute(sa.select(SignalRow)).scalar_one()
        snapshot: dict[str, Any] = s.execute(sa.select(SignalVersion.snapshot)).scalar_one()
        streamed: dict[str, Any] = s.execute(sa.select(SignalOutbox.payload)).scalar_one()
        outbox = {r.resource_type: r for r in s.execute(sa.select(ReceiptOutbox)).scalars()}
    stored = row.evidence_refs
    handle = stored["evidence_handle"]
    assert evidence_size(stored) < EVIDENCE_EMBED_LIMIT
    assert handle["evidence_id"] == evidence.evidence_id(TENANT, refs)
    assert handle["evidence_type"] == "signal_evidence"
    assert handle["storage_location"] == f"{eris.url}/v1/evidence/blobs/{handle['evidence_id']}"
    assert handle["expires_at"] == "2027-03-04T12:00:00Z"  # the default 365 days' retention
    assert stored["event_summary"] == refs["event_summary"]  # the readable part stays
    assert snapshot["evidence_refs"] == stored and streamed["evidence_refs"] == stored
    assert sorted(outbox) == ["evidence", "signal"]
    assert outbox["signal"].payload["evidence_handles"] == [handle]
    assert outbox["evidence"].payload["content"] == refs

    report = deliver(eris_settings)
    assert (report.delivered, report.dead, report.retry) == (2, 0, 0)
    assert received(eris)["blobs"] == [handle["evidence_id"]]
    blob = requests.get(handle["storage_location"], timeout=5).json()
    assert blob["content"] == refs and blob["tenant_id"] == TENANT


def test_small_evidence_stays_embedded(eris_settings: Any) -> None:
    refs = build_evidence(["f1"], ["b1"], {"counts": {"build_failed": 3}})
    persist(team_signal(refs))
    with session_factory()() as s:
        assert s.execute(sa.select(SignalRow.evidence_refs)).scalar_one() == refs
        kinds = s.execute(sa.select(ReceiptOutbox.resource_type)).scalars().all()
    assert kinds == ["signal"]


def test_a_blob_whose_content_does_not_match_its_hash_is_refused(eris: ErisStandIn) -> None:
    refs = big_evidence()
    blob = {"evidence_id": evidence.evidence_id(TENANT, refs), "tenant_id": TENANT,
            "evidence_type": "signal_evidence", "expires_at": "2027-03-04T12:00:00Z",
            "sha256": "0" * 64, "content": refs}
    answer = requests.post(f"{eris.url}/v1/evidence/blobs", json=blob, timeout=5)
    assert answer.status_code == 400 and "sha256" in answer.json()["reason"]


def test_a_team_critical_signal_has_a_signed_receipt_that_verifies_with_the_served_key(
        client: Any, eris_settings: Any) -> None:
    persist(team_signal(big_evidence(), severity="CRITICAL"))
    with session_factory()() as s:
        receipt: dict[str, Any] = s.execute(sa.select(ReceiptOutbox.payload).where(
            ReceiptOutbox.resource_type == "signal")).scalar_one()
    assert receipt["gate_id"] == "ubi" and receipt["schema_version"] == "1.0.0"
    assert receipt["evaluation_point"] == "post-deploy" and receipt["resource_type"] == "signal"
    assert receipt["decision"]["status"] == "warn"  # SPEC §13: never soft_block
    assert receipt["decision"]["badges"] == ["risk", "CRITICAL", "build_instability"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", receipt["snapshot_hash"])
    assert receipt["snapshot_hash"] == TenantConfig.default().snapshot_hash
    assert receipt["result"]["signal_id"] == "5e6f0000-0000-5000-8000-000000000001"
    served = client.get("/v1/ubi/receipts/public-key").json
    assert receipts.verify_receipt(receipt, served) is None  # schema-valid and signed
    tampered = {**receipt, "decision": {**receipt["decision"], "status": "pass"}}
    assert receipts.verify_receipt(tampered, served) == "signature does not verify"


def test_a_deleted_signal_takes_its_evidence_not_yet_at_eris_with_it(eris_settings: Any) -> None:
    from ubi.services import deletions

    persist(team_signal(big_evidence()))
    with session_factory()() as s:
        job = deletions.request_deletion(s, tenant_id=TENANT, actor_id=None, time_from=None,
                                         time_to=None, requested_by="test", reason="test")
        s.commit()
    counts = deletions.run_deletion(job)
    with session_factory()() as s:
        kinds = s.execute(sa.select(ReceiptOutbox.resource_type)).scalars().all()
        final: dict[str, Any] = s.execute(sa.select(SignalOutbox.payload).where(
            SignalOutbox.version == 2)).scalar_one()
    assert kinds == [] and counts["receipt_outbox"] == 2  # its receipt and its evidence
    assert (final["status"], final["reason"], final["evidence_refs"]) == (
        "resolved", "deleted", {})
