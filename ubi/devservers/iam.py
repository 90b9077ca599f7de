"""A stand-in for the platform IAM's token verification, for development and the test suite only.

It is a small real HTTP server (``ubi/devservers/standin.py``) that answers the one call UBI
makes (SPEC §7):

- ``POST /iam/v1/verify`` ``{"token": ...}`` → 200 ``{sub, scope: [...], valid_until}`` for a
  token it accepts, 401 ``{error, reason}`` otherwise. It decides by verifying the JWT itself
  with the key it was given (``jwt_secret`` for HS256, or ``public_key_pem`` for RS256/ES256),
  checking ``exp`` (and ``aud`` / ``iss`` when configured) and its revocation list. ``scope``
  is the token's ``scope`` (space-separated) and ``roles`` claims; ``valid_until`` (ISO 8601,
  UTC) is ``ttl`` seconds from now on UBI's clock (``ubi/clock.py``, so tests that move the
  shared clock move it too), never past the token's remaining lifetime.
- ``POST /_revoked`` ``{"sub"|"jti"|"token": ...}`` revokes tokens from then on;
  ``DELETE /_revoked`` forgets every revocation; ``GET /_revoked`` lists them.
- Fault injection (down, slow, 5xx, 429 with ``Retry-After``, next N) on verify calls;
  ``GET /_received`` lists every verify call (a SHA-256 of the token, never the token, the
  subject, the answer's status and the fault applied).

Run it with ``ubi devserver iam --port 8200`` (HS256 with UBI's own secret by default, so
``ubi token`` tokens verify) and point UBI at it with ``UBI_IAM_URL=http://127.0.0.1:8200``. In
production ``UBI_IAM_URL`` names the real IAM.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import jwt

from ubi import clock
from ubi.devservers.standin import Answer, StandIn

VERIFY = "/iam/v1/verify"
REVOKED = "/_revoked"
HMAC_ALGORITHMS = ["HS256"]
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_of(claims: dict[str, Any]) -> list[str]:
    """What the token grants: its ``scope`` (space-separated or a list) and ``roles``."""
    found: list[str] = []
    for name in ("scope", "roles"):
        value = claims.get(name)
        items = value.split() if isinstance(value, str) else value
        if isinstance(items, list):
            found += [s for s in items if isinstance(s, str) and s not in found]
    return found


class IamStandIn(StandIn):
    """The IAM stand-in; ``start()`` serves it in a thread, ``url`` is its base URL."""

    service = "iam"

    def __init__(self, *, jwt_secret: str | None = None, public_key_pem: str | None = None,
                 audience: str | None = None, issuer: str | None = None,
                 ttl: float = 60.0, host: str = "127.0.0.1", port: int = 0) -> None:
        if not jwt_secret and not public_key_pem:
            raise ValueError("give jwt_secret (HS256) or public_key_pem (RS256/ES256)")
        self.jwt_secret, self.public_key_pem = jwt_secret, public_key_pem
        self.audience, self.issuer, self.ttl = audience, issuer, ttl
        self.revoked: dict[str, set[str]] = {"sub": set(), "jti": set(), "token": set()}
        super().__init__(host=host, port=port)

    # --- verification ---

    def check(self, token: Any) -> tuple[dict[str, Any] | None, str]:
        """(the token's claims, "") when it is valid now, else (None, the reason)."""
        if not isinstance(token, str) or not token:
            return None, "token: missing"
        # The key decides the algorithms: an HS256 token "signed" with a public key, or
        # alg=none, is refused.
        key: Any = self.jwt_secret if self.jwt_secret else self.public_key_pem
        algorithms = HMAC_ALGORITHMS if self.jwt_secret else ASYMMETRIC_ALGORITHMS
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=algorithms, audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None})
        except jwt.PyJWTError as exc:
            return None, f"invalid token: {exc}"
        with self.lock:
            revoked = (claims.get("sub") in self.revoked["sub"]
                       or claims.get("jti") in self.revoked["jti"]
                       or token_digest(token) in self.revoked["token"])
        if revoked:
            return None, "token revoked"
        return claims, ""

    def verify(self, body: Any) -> Answer:
        token = body.get("token") if isinstance(body, dict) else None
        digest = token_digest(token) if isinstance(token, str) else None
        fault = self.take_fault()
        answer = self.shared_fault(fault)
        if answer is not None:
            self.record(token_sha256=digest, sub=None, status=answer.status,
                        fault=fault.mode if fault else None)
            return answer
        claims, reason = self.check(token)
        if claims is None:
            self.record(token_sha256=digest, sub=None, status=401, fault=None)
            return Answer(401, {"error": "invalid_token", "reason": reason})
        # The token's remaining lifetime is measured on the system clock (where PyJWT checks
        # exp); valid_until is stated on UBI's clock, which tests move.
        remaining = max(0.0, float(claims["exp"]) - time.time())
        valid_until = clock.utcnow() + timedelta(seconds=min(self.ttl, remaining))
        self.record(token_sha256=digest, sub=str(claims["sub"]), status=200, fault=None)
        return Answer(200, {"sub": str(claims["sub"]), "scope": scope_of(claims),
                            "valid_until": valid_until.isoformat()})

    # --- revocations ---

    def revoke(self, body: Any) -> Answer:
        kinds = [k for k in self.revoked if isinstance(body, dict) and body.get(k)]
        if len(kinds) != 1 or not isinstance(body[kinds[0]], str):
            return Answer(400, {"error": "bad_request",
                                "reason": "give exactly one of sub, jti, token (a string)"})
        kind = kinds[0]
        value = token_digest(body[kind]) if kind == "token" else body[kind]
        with self.lock:
            self.revoked[kind].add(value)
        return Answer(200, {"revoked": kind})

    def revocations(self) -> dict[str, list[str]]:
        with self.lock:
            return {kind: sorted(values) for kind, values in self.revoked.items()}

    # --- routes ---

    def handle(self, method: str, path: str, body: Any) -> Answer:
        if method == "POST" and path == VERIFY:
            return self.verify(body)
        if path == REVOKED:
            if method == "POST":
                return self.revoke(body)
            if method == "GET":
                return Answer(200, self.revocations())
            if method == "DELETE":
                with self.lock:
                    for values in self.revoked.values():
                        values.clear()
                return Answer(200, {"ok": True})
        return Answer(404, {"error": "not_found"})
