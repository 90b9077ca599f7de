"""A stand-in for ERIS, the evidence receipt service, for development and the test suite only.

It is a small real HTTP server (stdlib ``http.server``, threaded) that speaks the part of
ERIS's API UBI uses, and checks what UBI sends it:

- ``POST /v1/evidence/receipts``: verifies the receipt's Ed25519 signature against UBI's
  public key set, then stores it: 201 ``{receipt_id}`` when new, 409 ``{receipt_id,
  duplicate: true}`` when that ``receipt_id`` is already stored, 400 ``{error, reason}`` for a
  body that is not a receipt or a signature that does not verify.
- ``GET /v1/evidence/receipts/{id}``: the stored receipt, or 404.
- ``POST /v1/evidence/search``: ``{tenant_id?, resource_type?}`` → ``{receipts: [...]}``.
- Fault injection: ``POST /_faults`` with ``{"mode": "down"|"slow"|"5xx"|"429"|"400",
  "delay": s, "retry_after": s, "next_n": N}`` applies to receipt submissions (the next N, or
  all until ``DELETE /_faults``): ``down`` drops the connection without an answer, ``slow``
  answers after ``delay`` seconds, ``5xx`` answers 503, ``429`` answers 429 with
  ``Retry-After``, ``400`` rejects the receipt with a reason.
- ``GET /_received``: every submission it saw (receipt id, answer status, fault, whether
  the signature verified) and the ids it stored, for tests to assert on;
  ``DELETE /_received`` forgets everything.

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
import contextlib
import json
import re
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RECEIPTS = "/v1/evidence/receipts"
SEARCH = "/v1/evidence/search"
FAULT_MODES = ("down", "slow", "5xx", "429", "400")
_SIGNATURE = re.compile(r"^sig-ed25519:([0-9a-f]{16}):([A-Za-z0-9+/=]+)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def canonical(body: dict[str, Any]) -> bytes:
    """SPEC §13's canonical JSON (keys sorted recursively, `,`/`:` separators, UTF-8)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _kid(key: Ed25519PublicKey) -> str:
    import hashlib

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keys_from_document(document: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The keys of a UBI key set document (``GET /v1/ubi/receipts/public-key``), by kid."""
    found: dict[str, Ed25519PublicKey] = {}
    for entry in (document.get("keys") or {}).values():
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key_base64"]))
        found[_kid(key)] = key  # the kid is recomputed, never trusted from the document
    return found


@dataclass
class Fault:
    mode: str
    delay: float = 0.0
    retry_after: float = 1.0
    remaining: int | None = None  # None: until cleared


class ErisStandIn:
    """The stand-in server; ``start()`` serves it in a thread, ``url`` is its base URL."""

    def __init__(self, *, keys_url: str | None = None, key_file: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if not keys_url and not key_file:
            raise ValueError("give keys_url (UBI's /v1/ubi/receipts/public-key) or key_file")
        self.keys_url, self.key_file = keys_url, key_file
        self.lock = threading.Lock()
        self.keys: dict[str, Ed25519PublicKey] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.attempts: list[dict[str, Any]] = []
        self.fault: Fault | None = None
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ErisStandIn:
        self.thread = threading.Thread(target=self.server.serve_forever, name="eris",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> ErisStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    # --- faults ---

    def take_fault(self) -> Fault | None:
        with self.lock:
            fault = self.fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.fault = None
            return fault

    def record(self, receipt_id: Any, status: int | None, fault: str | None,
               reason: str | None = None) -> None:
        with self.lock:
            self.attempts.append({"receipt_id": receipt_id, "status": status, "fault": fault,
                                  "verified": status in (201, 409), "reason": reason,
                                  "at": time.time()})

    def received(self) -> dict[str, Any]:
        with self.lock:
            return {"attempts": list(self.attempts), "stored": list(self.receipts)}


def _handler(eris: ErisStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read /_received

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"null")
            except ValueError:
                return None

        def do_GET(self) -> None:
            if self.path == "/_received":
                return self._send(200, eris.received())
            if self.path.startswith(RECEIPTS + "/"):
                receipt_id = self.path[len(RECEIPTS) + 1:]
                with eris.lock:
                    found = eris.receipts.get(receipt_id)
                if found is None:
                    return self._send(404, {"error": "not_found"})
                return self._send(200, found)
            return self._send(404, {"error": "not_found"})

        def do_DELETE(self) -> None:
            with eris.lock:
                if self.path == "/_faults":
                    eris.fault = None
                elif self.path == "/_received":
                    eris.attempts.clear()
                    eris.receipts.clear()
                else:
                    return self._send(404, {"error": "not_found"})
            return self._send(200, {"ok": True})

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/_faults":
                return self._set_fault(body)
            if self.path == SEARCH:
                return self._search(body)
            if self.path == RECEIPTS:
                return self._submit(body)
            return self._send(404, {"error": "not_found"})

        def _set_fault(self, body: Any) -> None:
            if not isinstance(body, dict) or body.get("mode") not in FAULT_MODES:
                return self._send(400, {"error": "bad_request",
                                        "reason": f"mode must be one of {FAULT_MODES}"})
            next_n = body.get("next_n")
            fault = Fault(body["mode"], float(body.get("delay", 0)),
                          float(body.get("retry_after", 1)),
                          int(next_n) if next_n is not None else None)
            with eris.lock:
                eris.fault = fault
            return self._send(200, {"mode": fault.mode, "next_n": fault.remaining})

        def _search(self, body: Any) -> None:
            criteria = body if isinstance(body, dict) else {}
            with eris.lock:
                found = [r for r in eris.receipts.values()
                         if all(r.get(k) == criteria[k] for k in ("tenant_id", "resource_type")
                                if criteria.get(k) is not None)]
            return self._send(200, {"receipts": found})

        def _submit(self, receipt: Any) -> None:
            receipt_id = receipt.get("receipt_id") if isinstance(receipt, dict) else None
            fault = eris.take_fault()
            if fault is not None and fault.mode == "down":
                eris.record(receipt_id, None, "down")
                self.close_connection = True
                with contextlib.suppress(OSError):  # no answer: the connection just drops
                    self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if fault is not None and fault.mode == "slow":
                time.sleep(fault.delay)
            if fault is not None and fault.mode == "5xx":
                eris.record(receipt_id, 503, "5xx")
                return self._send(503, {"error": "unavailable", "reason": "injected fault"})
            if fault is not None and fault.mode == "429":
                eris.record(receipt_id, 429, "429")
                return self._send(429, {"error": "too_many_requests"},
                                  {"Retry-After": f"{fault.retry_after:g}"})
            reason = eris.check(receipt)
            if reason is None and fault is not None and fault.mode == "400":
                reason = "injected fault: receipt rejected"
            if reason is not None:
                eris.record(receipt_id, 400, fault.mode if fault else None, reason)
                return self._send(400, {"error": "invalid_receipt", "reason": reason})
            assert isinstance(receipt, dict)  # check() passed
            with eris.lock:
                duplicate = receipt["receipt_id"] in eris.receipts
                if not duplicate:
                    eris.receipts[receipt["receipt_id"]] = receipt
            status = 409 if duplicate else 201
            eris.record(receipt_id, status, fault.mode if fault else None)
            return self._send(status, {"receipt_id": receipt_id, "duplicate": duplicate})

    return Handler


def serve(eris: ErisStandIn) -> None:
    """Run the stand-in in the foreground (``ubi devserver eris``) until interrupted."""
    try:
        eris.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        eris.server.server_close()
