"""A stand-in for ERIS, the evidence receipt service, for development and the test suite only.

It is a small real HTTP server (stdlib ``http.server``, threaded) that speaks the part of
ERIS's API UBI uses, and checks what UBI sends it:

- ``POST /v1/evidence/receipts``: verifies the receipt's Ed25519 signature against UBI's
  public key set, then stores it: 201 ``{receipt_id}`` when new, 409 ``{receipt_id,
  duplicate: true}`` when that ``receipt_id`` is already stored, 400 ``{error, reason}`` for a
  body that is not a receipt or a signature that does not verify.
- ``GET /v1/evidence/receipts/{id}``: the stored receipt, or 404.
- ``POST /v1/evidence/blobs``: evidence of 1 KB or more ``{evidence_id, tenant_id,
  evidence_type, expires_at, sha256, content}``, checked against its SHA-256 (of the content's
  canonical JSON): 201 new, 409 when that ``evidence_id`` is stored, 400 with the reason;
  ``GET /v1/evidence/blobs/{id}`` answers it by handle.
- ``POST /v1/evidence/search``: ``{tenant_id?, resource_type?}`` → ``{receipts: [...]}``.
- Fault injection (``ubi/devservers/standin.py``) on receipt submissions, plus mode ``400``
  that rejects the receipt with a reason.
- ``GET /_received``: every submission it saw (``calls``: receipt id, answer status, fault,
  whether the signature verified) and the ids it ``stored``; ``DELETE /_received`` forgets
  everything.

Keys: ``--keys-url`` names UBI's ``GET /v1/ubi/receipts/public-key`` (fetched when a receipt
names a kid it does not know yet), or ``--key-file`` a file holding that document (JSON) or
one Ed25519 public key (PEM). The canonical form it verifies is written out here from SPEC §13
(``json.dumps`` with sorted keys, separators ``,`` and ``:``, no ASCII escaping), not imported
from UBI, so it checks UBI's signer rather than repeating it.

Run it with ``ubi devserver eris --port 8100 --keys-url
http://127.0.0.1:8000/v1/ubi/receipts/public-key`` and point UBI at it with
``UBI_ERIS_URL=http://127.0.0.1:8100``. In production ``UBI_ERIS_URL`` names the real ERIS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ubi.devservers.standin import SHARED_FAULT_MODES, Answer, StandIn

RECEIPTS = "/v1/evidence/receipts"
BLOBS = "/v1/evidence/blobs"
SEARCH = "/v1/evidence/search"
_SIGNATURE = re.compile(r"^sig-ed25519:([0-9a-f]{16}):([A-Za-z0-9+/=]+)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def canonical(body: dict[str, Any]) -> bytes:
    """SPEC §13's canonical JSON (keys sorted recursively, `,`/`:` separators, UTF-8)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _kid(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keys_from_document(document: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The keys of a UBI key set document (``GET /v1/ubi/receipts/public-key``), by kid."""
    found: dict[str, Ed25519PublicKey] = {}
    for entry in (document.get("keys") or {}).values():
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key_base64"]))
        found[_kid(key)] = key  # the kid is recomputed, never trusted from the document
    return found


class ErisStandIn(StandIn):
    """The ERIS stand-in; ``start()`` serves it in a thread, ``url`` is its base URL."""

    service = "eris"
    fault_modes = (*SHARED_FAULT_MODES, "400")

    def __init__(self, *, keys_url: str | None = None, key_file: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if not keys_url and not key_file:
            raise ValueError("give keys_url (UBI's /v1/ubi/receipts/public-key) or key_file")
        self.keys_url, self.key_file = keys_url, key_file
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, dict[str, Any]] = {}
        super().__init__(host=host, port=port)

    # --- keys and verification ---

    def _load_keys(self) -> dict[str, Ed25519PublicKey]:
        if self.keys_url:
            with urllib.request.urlopen(self.keys_url, timeout=5) as resp:
                return keys_from_document(json.loads(resp.read()))
        text = Path(str(self.key_file)).read_text()
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("the key file holds no Ed25519 public key")
            return {_kid(key): key}
        return keys_from_document(json.loads(text))

    def key_for(self, kid: str) -> Ed25519PublicKey | None:
        with self.lock:
            key = self.keys.get(kid)
        if key is None:  # a key not seen yet (a rotation): read the key set again
            loaded = self._load_keys()
            with self.lock:
                self.keys.update(loaded)
                key = self.keys.get(kid)
        return key

    def check(self, receipt: Any) -> str | None:
        """None when ``receipt`` is acceptable, else the reason it is not."""
        if not isinstance(receipt, dict):
            return "the body is not a JSON object"
        for name in ("receipt_id", "tenant_id", "resource_type", "signature"):
            if not isinstance(receipt.get(name), str) or not receipt[name]:
                return f"{name}: missing"
        if not _UUID.match(receipt["receipt_id"]):
            return "receipt_id: not a UUID"
        match = _SIGNATURE.match(receipt["signature"])
        if match is None:
            return "signature: not sig-ed25519:{kid}:{base64}"
        try:
            key = self.key_for(match.group(1))
        except (OSError, ValueError) as exc:
            return f"signature: the key set could not be read ({exc})"
        if key is None:
            return f"signature: unknown kid {match.group(1)}"
        body = {k: v for k, v in receipt.items() if k != "signature"}
        try:
            key.verify(base64.b64decode(match.group(2)), canonical(body))
        except (InvalidSignature, ValueError):
            return "signature: does not verify"
        return None

    # --- the record ---

    def received(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": list(self.calls), "stored": list(self.receipts),
                    "blobs": list(self.blobs)}

    def forget(self) -> None:
        super().forget()
        self.receipts.clear()
        self.blobs.clear()

    # --- routes ---

    def handle(self, method: str, path: str, body: Any) -> Answer:
        if method == "GET" and path.startswith(RECEIPTS + "/"):
            with self.lock:
                found = self.receipts.get(path[len(RECEIPTS) + 1:])
            return Answer(200, found) if found is not None else Answer(404, {"error": "not_found"})
        if method == "POST" and path == SEARCH:
            criteria = body if isinstance(body, dict) else {}
            with self.lock:
                found_all = [r for r in self.receipts.values()
                             if all(r.get(k) == criteria[k] for k in ("tenant_id", "resource_type")
                                    if criteria.get(k) is not None)]
            return Answer(200, {"receipts": found_all})
        if method == "GET" and path.startswith(BLOBS + "/"):
            with self.lock:
                blob = self.blobs.get(path[len(BLOBS) + 1:])
            return Answer(200, blob) if blob is not None else Answer(404, {"error": "not_found"})
        if method == "POST" and path == RECEIPTS:
            return self._submit(body)
        if method == "POST" and path == BLOBS:
            return self._store_blob(body)
        return Answer(404, {"error": "not_found"})

    @staticmethod
    def check_blob(blob: Any) -> str | None:
        """None when ``blob`` is a well-formed evidence blob, else the reason it is not."""
        if not isinstance(blob, dict):
            return "the body is not a JSON object"
        for name in ("evidence_id", "tenant_id", "evidence_type", "expires_at", "sha256"):
            if not isinstance(blob.get(name), str) or not blob[name]:
                return f"{name}: missing"
        if not _UUID.match(blob["evidence_id"]):
            return "evidence_id: not a UUID"
        if not isinstance(blob.get("content"), dict):
            return "content: not a JSON object"
        if hashlib.sha256(canonical(blob["content"])).hexdigest() != blob["sha256"]:
            return "sha256: does not match the content"
        return None

    def _store_blob(self, blob: Any) -> Answer:
        evidence_id = blob.get("evidence_id") if isinstance(blob, dict) else None
        fault = self.take_fault()
        mode = fault.mode if fault else None
        answer = self.shared_fault(fault)
        if answer is None:
            reason = self.check_blob(blob)
            if reason is not None:
                answer = Answer(400, {"error": "invalid_evidence", "reason": reason})
            else:
                assert isinstance(blob, dict)
                with self.lock:
                    duplicate = blob["evidence_id"] in self.blobs
                    self.blobs.setdefault(blob["evidence_id"], blob)
                answer = Answer(409 if duplicate else 201,
                                {"evidence_id": evidence_id, "duplicate": duplicate})
        self.record(evidence_id=evidence_id, status=answer.status, fault=mode,
                    verified=answer.status in (201, 409), reason=None)
        return answer

    def _submit(self, receipt: Any) -> Answer:
        receipt_id = receipt.get("receipt_id") if isinstance(receipt, dict) else None
        fault = self.take_fault()
        mode = fault.mode if fault else None
        answer = self.shared_fault(fault)
        if answer is not None:
            self.record(receipt_id=receipt_id, status=answer.status, fault=mode,
                        verified=False, reason=None)
            return answer
        reason = self.check(receipt)
        if reason is None and mode == "400":
            reason = "injected fault: receipt rejected"
        if reason is not None:
            self.record(receipt_id=receipt_id, status=400, fault=mode, verified=False,
                        reason=reason)
            return Answer(400, {"error": "invalid_receipt", "reason": reason})
        assert isinstance(receipt, dict)  # check() passed
        with self.lock:
            duplicate = receipt["receipt_id"] in self.receipts
            if not duplicate:
                self.receipts[receipt["receipt_id"]] = receipt
        status = 409 if duplicate else 201
        self.record(receipt_id=receipt_id, status=status, fault=mode, verified=True,
                    reason=None)
        return Answer(status, {"receipt_id": receipt_id, "duplicate": duplicate})
