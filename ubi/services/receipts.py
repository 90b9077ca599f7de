"""Evidence receipts (SPEC §13): built, validated, signed and written to the receipt outbox.

A receipt is emitted for every config write (success or failure) and for every creation or
state change of a signal with severity WARN or higher at team or tenant scope. The signature
is Ed25519 over the canonical JSON of the receipt without ``signature`` (keys sorted
recursively, separators ``,`` and ``:``, UTF-8, no ASCII escaping), written
``sig-ed25519:{kid}:{base64}``. Delivery to ERIS happens later, from the outbox.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
import uuid
from datetime import datetime
from typing import Any

import jsonschema
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from ubi.analytics.tenant_config import canonical_json
from ubi.models import ReceiptOutbox
from ubi.models.session import dialect_insert
from ubi.services.keys import receipt_kid
from ubi.settings import Settings, get_settings

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
    key = public_key(settings)
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
    session.execute(stmt.on_conflict_do_nothing(index_elements=["receipt_id"]))


def snapshot_of(config_raw: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(config_raw).encode()).hexdigest()
