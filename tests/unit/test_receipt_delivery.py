"""Receipt delivery without servers: ERIS's answers mapped to outcomes, the backoff, what one
attempt does to an outbox row, and signature checks against a key set (SPEC §13)."""

from __future__ import annotations

import base64
import copy
import os
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from ubi.integrations.breakers import retry_after_seconds
from ubi.integrations.eris import Outcome, outcome_of
from ubi.models import ReceiptOutbox
from ubi.services import receipts

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("status, kind", [
    (200, "delivered"), (201, "delivered"), (409, "duplicate"), (429, "retry"),
    (408, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (400, "permanent"),
    (401, "permanent"), (403, "permanent"), (404, "permanent"), (422, "permanent"),
    (302, "retry"),
])
def test_answers_map_to_outcomes(status: int, kind: str) -> None:
    outcome = outcome_of(status, '{"reason": "bad signature"}')
    assert outcome.kind == kind
    assert outcome.delivered == (kind in ("delivered", "duplicate"))
    if kind == "permanent":
        assert "bad signature" in outcome.reason and str(status) in outcome.reason


def test_retry_after_is_read_in_seconds_or_as_a_date() -> None:
    assert outcome_of(429, "", "7").retry_after == 7.0
    assert retry_after_seconds("Wed, 17 Jun 2026 12:01:00 GMT",
                               now_epoch=NOW.timestamp()) == 60.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("999999") == 3600.0  # bounded


def test_backoff_grows_exponentially_with_equal_jitter_and_honours_retry_after() -> None:
    rng = random.Random(3)
    for attempts in range(1, 15):
        ceiling = min(receipts.RETRY_CAP_SECONDS,
                      receipts.RETRY_BASE_SECONDS * 2 ** (attempts - 1))
        delays = [receipts.retry_delay(attempts, rng=rng).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert receipts.retry_delay(1, retry_after=120, rng=rng) == timedelta(seconds=120)
    assert receipts.retry_delay(8, retry_after=1, rng=rng) >= timedelta(seconds=320)


def _row(**kw: object) -> ReceiptOutbox:
    values: dict[str, object] = {
        "receipt_id": str(uuid.uuid4()), "tenant_id": "acme", "resource_type": "config",
        "payload": {}, "status": "pending", "attempts": 0, "first_attempt_at": None,
        "next_attempt_at": NOW, "created_at": NOW}
    values.update(kw)
    return ReceiptOutbox(**values)


def test_an_attempt_is_recorded_on_its_row() -> None:
    row = _row()
    assert receipts.record_outcome(row, Outcome("retry", "HTTP 503"), NOW) == "retry"
    assert (row.status, row.attempts, row.first_attempt_at) == ("pending", 1, NOW)
    assert NOW + timedelta(seconds=2.5) <= row.next_attempt_at <= NOW + timedelta(seconds=5)
    assert row.last_error == "HTTP 503"
    later = NOW + timedelta(minutes=1)
    assert receipts.record_outcome(row, Outcome("duplicate"), later) == "duplicate"
    assert (row.status, row.delivered_at, row.last_error, row.first_attempt_at) == (
        "delivered", later, None, NOW)


def test_held_back_by_an_open_breaker_is_no_attempt() -> None:
    """No call was made: the receipt's backoff does not grow, and it is due again when the
    breaker may let a probe by (after a long outage it is sent within one reset interval)."""
    row = _row(first_attempt_at=NOW, attempts=12)
    held = Outcome("retry", "circuit breaker open", retry_after=30.0, attempted=False)
    assert receipts.record_outcome(row, held, NOW) == "retry"
    assert (row.attempts, row.next_attempt_at) == (12, NOW + timedelta(seconds=30))
    assert receipts.record_outcome(row, held, NOW + timedelta(hours=24)) == "dead"


def test_a_permanent_refusal_is_dead_at_once_with_its_reason() -> None:
    row = _row()
    assert receipts.record_outcome(row, Outcome("permanent", "HTTP 400: bad"), NOW) == "dead"
    assert (row.status, row.last_error) == ("dead", "HTTP 400: bad")


def test_retries_stop_24_hours_after_the_first_attempt() -> None:
    row = _row(first_attempt_at=NOW, attempts=20)
    near = NOW + timedelta(hours=23, minutes=59)
    assert receipts.record_outcome(row, Outcome("retry", "timeout"), near) == "retry"
    assert row.next_attempt_at == NOW + timedelta(hours=24)  # the last try, at the deadline
    assert receipts.record_outcome(row, Outcome("retry", "timeout"),
                                   row.next_attempt_at) == "dead"
    assert row.status == "dead" and "timeout" in (row.last_error or "")


def test_a_signed_receipt_verifies_against_the_key_set_and_a_tampered_one_does_not(
        settings) -> None:
    receipt = receipts.build_receipt(
        receipt_id=str(uuid.uuid4()), tenant_id="acme", resource_type="config",
        evaluation_point="config", config_version=2, snapshot_hash="sha256:" + "0" * 64,
        inputs={"changed": ["thresholds.z"]}, decision={"status": "pass", "rationale": "ok",
                                                        "badges": []},
        result={"accepted": True, "version": 2}, actor_type="human", repo_id="ubi:acme",
        timestamp=NOW, settings=settings)
    keys = receipts.key_set(settings)
    assert receipts.verify_receipt(receipt, keys) is None
    tampered = copy.deepcopy(receipt)
    tampered["result"]["version"] = 3
    assert receipts.verify_receipt(tampered, keys) == "signature does not verify"
    assert (receipts.verify_receipt(receipt, {"keys": {}}) or "").startswith("unknown key id")
    assert "signature" in (receipts.verify_receipt({**receipt, "signature": "x"}, keys) or "")


def test_receipts_of_a_retired_key_still_verify_with_the_served_key_set(settings) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ubi.settings import SettingsError, load_settings

    old = Ed25519PrivateKey.generate()
    old_settings = settings.replace(receipt_signing_key=base64.b64encode(old.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())).decode())
    receipt = receipts.build_receipt(
        receipt_id=str(uuid.uuid4()), tenant_id="acme", resource_type="config",
        evaluation_point="config", config_version=1, snapshot_hash="sha256:" + "1" * 64,
        inputs={}, decision={"status": "pass", "rationale": "ok", "badges": []}, result={},
        actor_type="human", repo_id="ubi:acme", timestamp=NOW, settings=old_settings)
    assert (receipts.verify_receipt(receipt, receipts.key_set(settings)) or "").startswith(
        "unknown")
    raw = base64.b64encode(old.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    rotated = load_settings({**os.environ, "UBI_RECEIPT_RETIRED_PUBLIC_KEYS": f" {raw} "})
    served = receipts.key_set(rotated)
    assert served["current_kid"] == receipts.key_set(settings)["current_kid"]
    assert sorted(k["status"] for k in served["keys"].values()) == ["current", "retired"]
    assert receipts.verify_receipt(receipt, served) is None
    with pytest.raises(SettingsError, match="RETIRED_PUBLIC_KEYS"):
        load_settings({**os.environ, "UBI_RECEIPT_RETIRED_PUBLIC_KEYS": "not-a-key"})
