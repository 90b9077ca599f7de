"""Evidence receipts (SPEC §13): built, validated, signed and written to the receipt outbox.

A receipt is emitted for every config write (success or failure) and for every creation or
state change of a signal with severity WARN or higher at team or tenant scope. The signature
is Ed25519 over the canonical JSON of the receipt without ``signature`` (keys sorted
recursively, separators ``,`` and ``:``, UTF-8, no ASCII escaping), written
``sig-ed25519:{kid}:{base64}``.

Delivery (``deliver_due``, run by the ``receipts`` queue's beat task) sends due outbox rows to
ERIS through ``ubi.integrations.eris``: delivered or duplicate → ``delivered``; a transient
failure → retried with exponential backoff and equal jitter (a longer ``Retry-After`` wins)
until 24 h after the first attempt, then ``dead``; a permanent 4xx → ``dead`` at once with
ERIS's reason. ``ubi receipts dead`` lists dead receipts, ``ubi receipts retry`` re-drives them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import jsonschema
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.tenant_config import canonical_json
from ubi.integrations.eris import Outcome
from ubi.models import ReceiptOutbox
from ubi.models.session import dialect_insert, is_postgres
from ubi.observability.metrics import RECEIPT_EMISSION
from ubi.services.backoff import equal_jitter
from ubi.services.keys import receipt_kid
from ubi.settings import Settings, get_settings

log = logging.getLogger("ubi.receipts")

RECEIPT_NAMESPACE = uuid.UUID("6f0d8a52-3c1b-4a57-9a43-8c1f2a7b9e10")

RECEIPT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["receipt_id", "gate_id", "schema_version", "policy_version_ids",
                 "snapshot_hash", "timestamp_utc", "timestamp_monotonic_ms",
                 "evaluation_point", "inputs", "decision", "result", "actor",
                 "evidence_handles", "degraded", "tenant_id", "resource_type", "signature"],
    "properties": {
        "receipt_id": {"type": "string", "format": "uuid",
                       "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                  "[0-9a-f]{12}$"},
        "gate_id": {"const": "ubi"},
        "schema_version": {"const": "1.0.0"},
        "policy_version_ids": {"type": "array", "items": {"type": "string"}},
        "snapshot_hash": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "timestamp_utc": {"type": "string", "minLength": 20},
        "timestamp_monotonic_ms": {"type": "integer", "minimum": 0},
        "evaluation_point": {"enum": ["config", "post-deploy"]},
        "inputs": {"type": "object"},
        "decision": {"type": "object", "additionalProperties": False,
                     "required": ["status", "rationale", "badges"],
                     "properties": {
                         "status": {"enum": ["pass", "warn", "soft_block", "hard_block"]},
                         "rationale": {"type": "string"},
                         "badges": {"type": "array", "items": {"type": "string"}}}},
        "result": {"type": "object"},
        "actor": {"type": "object", "required": ["repo_id", "type"],
                  "properties": {"repo_id": {"type": "string"},
                                 "machine_fingerprint": {"type": "string"},
                                 "type": {"enum": ["human", "ai_agent", "service"]}}},
        "evidence_handles": {"type": "array"},
        "degraded": {"type": "boolean"},
        "tenant_id": {"type": "string", "minLength": 1},
        "resource_type": {"enum": ["config", "signal"]},
        "signature": {"type": "string", "pattern": "^sig-ed25519:[0-9a-f]{16}:[A-Za-z0-9+/=]+$"},
    },
}
_validator = jsonschema.Draft202012Validator(RECEIPT_SCHEMA)


class ReceiptInvalid(ValueError):
    pass


@functools.lru_cache(maxsize=4)
def signing_key(raw: str) -> Ed25519PrivateKey:
    """The Ed25519 key from ``UBI_RECEIPT_SIGNING_KEY`` (PEM, or base64 of the raw 32 bytes)."""
    text = raw.strip()
    if "-----BEGIN" in text:
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("UBI_RECEIPT_SIGNING_KEY is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def public_key(settings: Settings | None = None) -> Ed25519PublicKey:
    return signing_key((settings or get_settings()).receipt_signing_key).public_key()


def public_key_document(settings: Settings | None = None) -> dict[str, str]:
    return _document_of(public_key(settings))


def _document_of(key: Ed25519PublicKey) -> dict[str, str]:
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kid": receipt_kid(key), "algorithm": "Ed25519", "public_key_pem": pem,
            "public_key_base64": base64.b64encode(raw).decode()}


def sign(receipt: dict[str, Any], settings: Settings | None = None) -> str:
    key = signing_key((settings or get_settings()).receipt_signing_key)
    body = {k: v for k, v in receipt.items() if k != "signature"}
    signature = key.sign(canonical_json(body).encode("utf-8"))
    return f"sig-ed25519:{receipt_kid(key.public_key())}:{base64.b64encode(signature).decode()}"


def verify(receipt: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """True when ``receipt['signature']`` is valid for its content under ``key``."""
    from cryptography.exceptions import InvalidSignature

    try:
        _, kid, sig = receipt["signature"].split(":", 2)
    except (KeyError, ValueError):
        return False
    if kid != receipt_kid(key):
        return False
    body = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(sig), canonical_json(body).encode("utf-8"))
        return True
    except InvalidSignature:
        return False


def build_receipt(*, receipt_id: str, tenant_id: str, resource_type: str,
                  evaluation_point: str, config_version: int, snapshot_hash: str,
                  inputs: dict[str, Any], decision: dict[str, Any], result: dict[str, Any],
                  actor_type: str, repo_id: str, timestamp: datetime,
                  evidence_handles: list[Any] | None = None, degraded: bool = False,
                  settings: Settings | None = None) -> dict[str, Any]:
    """A complete, signed receipt; raises ``ReceiptInvalid`` when it breaks its schema."""
    receipt: dict[str, Any] = {
        "receipt_id": receipt_id, "gate_id": "ubi", "schema_version": "1.0.0",
        "policy_version_ids": [f"ubi-config:{tenant_id}:v{config_version}"],
        "snapshot_hash": snapshot_hash,
        "timestamp_utc": timestamp.isoformat().replace("+00:00", "Z"),
        "timestamp_monotonic_ms": time.monotonic_ns() // 1_000_000,
        "evaluation_point": evaluation_point, "inputs": inputs, "decision": decision,
        "result": result, "actor": {"repo_id": repo_id, "type": actor_type},
        "evidence_handles": evidence_handles or [], "degraded": degraded,
        "tenant_id": tenant_id, "resource_type": resource_type, "signature": "",
    }
    receipt["signature"] = sign(receipt, settings)
    errors = sorted(_validator.iter_errors(receipt), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.path) or "$"
        raise ReceiptInvalid(f"receipt {path}: {first.message}")
    return receipt


def signal_receipt_id(signal_id: str, version: int) -> str:
    """Deterministic: a re-run of the same signal version never emits a second receipt."""
    return str(uuid.uuid5(RECEIPT_NAMESPACE, f"signal:{signal_id}:{version}"))


def enqueue_receipt(session: Session, receipt: dict[str, Any], *, resource_id: str,
                    now: datetime) -> None:
    """Write a receipt to the outbox (idempotent on ``receipt_id``)."""
    stmt = dialect_insert(session, ReceiptOutbox.__table__).values(
        receipt_id=receipt["receipt_id"], tenant_id=receipt["tenant_id"],
        resource_type=receipt["resource_type"], resource_id=resource_id, payload=receipt,
        status="pending", attempts=0, next_attempt_at=now, created_at=now)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["tenant_id", "receipt_id"]))


def snapshot_of(config_raw: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(config_raw).encode()).hexdigest()


# --- the key set (GET /v1/ubi/receipts/public-key) and verification ---------------------------

def key_set(settings: Settings | None = None) -> dict[str, Any]:
    """The public keys that verify UBI's receipts, by kid, and the kid that signs now: the
    current key and the retired ones of ``UBI_RECEIPT_RETIRED_PUBLIC_KEYS`` (a retired key
    stays listed until the receipts it signed have expired at ERIS)."""
    settings = settings or get_settings()
    current = {**public_key_document(settings), "status": "current"}
    keys = {current["kid"]: current}
    for raw in settings.receipt_retired_public_keys:
        retired = Ed25519PublicKey.from_public_bytes(base64.b64decode(raw))
        keys.setdefault(receipt_kid(retired), {**_document_of(retired), "status": "retired"})
    return {"current_kid": current["kid"], "keys": keys}


def _public_key_of(entry: dict[str, Any]) -> Ed25519PublicKey:
    if entry.get("public_key_base64"):
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key_base64"]))
    key = serialization.load_pem_public_key(str(entry["public_key_pem"]).encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_receipt(receipt: Any, keys: dict[str, Any]) -> str | None:
    """None when ``receipt`` is a well-formed receipt whose signature verifies under the key
    its kid names in ``keys`` (a ``key_set`` document); otherwise the reason it does not."""
    if not isinstance(receipt, dict):
        return "a receipt is a JSON object"
    errors = sorted(_validator.iter_errors(receipt), key=lambda e: list(e.path))
    if errors:
        path = ".".join(str(p) for p in errors[0].path) or "$"
        return f"receipt {path}: {errors[0].message}"
    kid = receipt["signature"].split(":", 2)[1]
    entry = (keys.get("keys") or {}).get(kid)
    if entry is None:
        return f"unknown key id {kid}"
    try:
        key = _public_key_of(entry)
    except (ValueError, TypeError, KeyError) as exc:
        return f"key {kid} unusable: {exc}"
    if not verify(receipt, key):
        return "signature does not verify"
    return None


# --- delivery to ERIS ---------------------------------------------------------------------------

#: Receipts one delivery run claims (each may take up to ``UBI_HTTP_TIMEOUT``).
DELIVERY_BATCH = 50
#: A run sends nothing more after this many seconds (a slow ERIS must not hold the claimed
#: rows' locks for long); the rows it did not send stay due for the next run.
DELIVERY_BUDGET_SECONDS = 20.0
#: Backoff from the first attempt: base * 2^(attempts-1), at most the cap, equal jitter.
RETRY_BASE_SECONDS = 5.0
RETRY_CAP_SECONDS = 3600.0
#: After this long from its first attempt a receipt that still fails is dead (SPEC §13).
DELIVERY_WINDOW = timedelta(hours=24)


@dataclass
class DeliveryReport:
    delivered: int = 0
    duplicate: int = 0
    retry: int = 0
    dead: int = 0


def retry_delay(attempts: int, *, retry_after: float | None = None,
                rng: random.Random | None = None) -> timedelta:
    """The wait before the next attempt after ``attempts`` failed ones: exponential with
    equal jitter (half fixed, half uniform), in [c/2, c] for c = min(cap, base * 2^(n-1));
    a longer ``retry_after`` (seconds, from ERIS) wins."""
    wait = equal_jitter(attempts, base_s=RETRY_BASE_SECONDS, cap_s=RETRY_CAP_SECONDS, rng=rng)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return wait


def record_outcome(row: ReceiptOutbox, outcome: Outcome, now: datetime,
                   rng: random.Random | None = None) -> str:
    """Apply one attempt's outcome to its outbox row; returns the status counted
    (``delivered``, ``duplicate``, ``retry`` or ``dead``)."""
    if outcome.attempted:
        row.attempts += 1
    if row.first_attempt_at is None:
        row.first_attempt_at = now
    if outcome.delivered:
        row.status, row.delivered_at, row.last_error = "delivered", now, None
        return outcome.kind
    row.last_error = outcome.reason[:2000]
    deadline = row.first_attempt_at + DELIVERY_WINDOW
    if outcome.kind == "permanent" or now >= deadline:
        row.status = "dead"
        if outcome.kind != "permanent":
            row.last_error = (f"undelivered {DELIVERY_WINDOW} after the first attempt; "
                              f"last: {outcome.reason}")[:2000]
        return "dead"
    # The last retry lands on the deadline itself, so the window is tried to its end. Held
    # back by an open breaker (no call made): due when the breaker may let a probe by, so a
    # long outage does not leave receipts backing off for an hour once ERIS is back.
    wait = (timedelta(seconds=outcome.retry_after or 0) if not outcome.attempted
            else retry_delay(row.attempts, retry_after=outcome.retry_after, rng=rng))
    row.next_attempt_at = min(now + wait, deadline)
    return "retry"


class ReceiptSubmitter(Protocol):
    def submit(self, document: dict[str, Any], resource_type: str) -> Outcome: ...


def deliver_due(session: Session, client: ReceiptSubmitter, *, now: datetime | None = None,
                limit: int = DELIVERY_BATCH,
                budget_seconds: float = DELIVERY_BUDGET_SECONDS) -> DeliveryReport:
    """Deliver the due pending receipts (a bounded batch, claimed with ``FOR UPDATE SKIP
    LOCKED`` so concurrent runs never send the same one) and record each outcome in this
    transaction; every outcome is counted in ``ubi_receipt_emission_total``."""
    now = now or clock.utcnow()
    stmt = (sa.select(ReceiptOutbox)
            .where(ReceiptOutbox.status == "pending", ReceiptOutbox.next_attempt_at <= now)
            .order_by(ReceiptOutbox.next_attempt_at, ReceiptOutbox.receipt_id).limit(limit))
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    report = DeliveryReport()
    started = time.monotonic()  # a duration, not a due date: the clock file plays no part
    for row in session.execute(stmt).scalars():
        if time.monotonic() - started > budget_seconds:
            break
        outcome = client.submit(row.payload, row.resource_type)
        status = record_outcome(row, outcome, now)
        setattr(report, status, getattr(report, status) + 1)
        RECEIPT_EMISSION.labels(tenant_id=row.tenant_id, status=status).inc()
        if status == "dead":
            log.error("receipt dead: %s", row.last_error,
                      extra={"ubi": {"tenant_id": row.tenant_id, "receipt_id": row.receipt_id}})
        elif status == "retry":
            log.warning("receipt not delivered yet: %s", outcome.reason,
                        extra={"ubi": {"tenant_id": row.tenant_id,
                                       "receipt_id": row.receipt_id}})
    return report


def dead_receipts(session: Session, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Dead receipts, oldest first: id, tenant, resource, attempts, first attempt, error."""
    stmt = sa.select(ReceiptOutbox).where(ReceiptOutbox.status == "dead")
    if tenant_id is not None:
        stmt = stmt.where(ReceiptOutbox.tenant_id == tenant_id)
    rows = session.execute(stmt.order_by(ReceiptOutbox.created_at,
                                         ReceiptOutbox.receipt_id)).scalars()
    return [{"receipt_id": r.receipt_id, "tenant_id": r.tenant_id,
             "resource_type": r.resource_type, "resource_id": r.resource_id,
             "attempts": r.attempts,
             "first_attempt_at": r.first_attempt_at.isoformat() if r.first_attempt_at else None,
             "last_error": r.last_error} for r in rows]


def redrive_dead(session: Session, receipt_ids: list[str] | None, *,
                 now: datetime | None = None) -> list[str]:
    """Put dead receipts (the given ids, or all with None) back to pending, due now, with a
    fresh 24 h window; returns the ids re-driven (an id that is not dead is left alone)."""
    now = now or clock.utcnow()
    stmt = sa.update(ReceiptOutbox).where(ReceiptOutbox.status == "dead")
    if receipt_ids is not None:
        stmt = stmt.where(ReceiptOutbox.receipt_id.in_(receipt_ids))
    stmt = stmt.values(status="pending", next_attempt_at=now, first_attempt_at=None,
                       attempts=0).returning(ReceiptOutbox.receipt_id)
    return sorted(session.execute(stmt).scalars())
