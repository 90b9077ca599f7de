"""Bearer-token authentication and role / tenant authorisation (SPEC §7).

One verifier per deployment (:func:`verifier`): with ``UBI_IAM_URL`` set, tokens are verified
remotely by the platform IAM (:class:`RemoteTokenVerifier`, ``ubi/integrations/iam.py``);
otherwise locally (:class:`TokenVerifier`).

Locally, tokens are verified with PyJWT: HS256 against ``UBI_JWT_SECRET`` (development), RS256
/ ES256 against ``UBI_JWT_PUBLIC_KEY`` or the keys of a JWKS file (selected by ``kid``).
``exp``, ``aud`` and ``iss`` are required and checked. The algorithm of a token decides which
key family may verify it, and only families that are configured are accepted, so ``alg=none``
and HS/RS confusion (an HMAC token "signed" with the public key) are refused.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import jwt
from flask import g, request
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ubi.settings import Settings, get_settings
from ubi.web.errors import ApiError, DependencyUnavailable

log = logging.getLogger("ubi.auth")

ROLES: tuple[str, ...] = (
    "ubi:read:actor", "ubi:read:team", "ubi:read:tenant", "ubi:write:config",
    "ubi:write:events", "ubi:admin:privacy")
PRIVILEGED_ROLES: frozenset[str] = frozenset({"product_ops", "admin"})
HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 30
#: How long a verified token's principal is reused without verifying it again (never past the
#: token's own ``exp``), and how many tokens are remembered.
VERIFIED_TOKEN_SECONDS = 60.0
VERIFIED_TOKENS_MAX = 4096

F = TypeVar("F", bound=Callable[..., Any])


class AuthError(ApiError):
    def __init__(self, message: str):
        super().__init__(401, message, code="unauthorized",
                         headers={"WWW-Authenticate": 'Bearer realm="ubi"'})


class ForbiddenError(ApiError):
    def __init__(self, message: str):
        super().__init__(403, message, code="forbidden")


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, tenant and roles, as vouched for by a verified token."""

    sub: str
    tenant_id: str | None
    roles: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def privileged(self) -> bool:
        return bool(self.roles & PRIVILEGED_ROLES)

    def has(self, role: str) -> bool:
        return self.privileged or role in self.roles

    def require(self, *roles: str) -> None:
        """403 unless the caller holds one of ``roles`` (privileged callers hold them all)."""
        if not any(self.has(r) for r in roles):
            raise ForbiddenError(f"requires role {' or '.join(roles)}")

    def may_access_tenant(self, tenant_id: str) -> bool:
        return self.privileged or (self.tenant_id is not None and tenant_id == self.tenant_id)

    def require_tenant(self, tenant_id: str) -> None:
        """403 when ``tenant_id`` is not the caller's own (unless privileged)."""
        if not self.may_access_tenant(tenant_id):
            raise ForbiddenError(f"tenant {tenant_id!r} is not the caller's tenant")


def roles_from_claims(claims: dict[str, Any]) -> frozenset[str]:
    """Roles from ``roles`` (list) and/or ``scope`` (space-separated string, or a list)."""
    roles: set[str] = set()
    raw_roles = claims.get("roles")
    if isinstance(raw_roles, list):
        roles.update(r for r in raw_roles if isinstance(r, str))
    elif isinstance(raw_roles, str):
        roles.update(raw_roles.split())
    scope = claims.get("scope")
    if isinstance(scope, str):
        roles.update(scope.split())
    elif isinstance(scope, list):
        roles.update(s for s in scope if isinstance(s, str))
    return frozenset(roles)


def tenant_from_claims(claims: dict[str, Any]) -> str | None:
    """``tenant_id`` claim, else a ``tenant:user`` or ``user@tenant`` subject."""
    tenant = claims.get("tenant_id")
    if isinstance(tenant, str) and tenant:
        return tenant
    sub = claims.get("sub")
    if isinstance(sub, str):
        if ":" in sub:
            head = sub.split(":", 1)[0]
            return head or None
        if "@" in sub:
            tail = sub.rsplit("@", 1)[1]
            return tail or None
    return None


def _load_pem(value: str) -> str:
    text = value.strip()
    if "-----BEGIN" in text:
        return text
    path = Path(text).expanduser()
    if path.is_file():
        return path.read_text()
    raise ValueError("UBI_JWT_PUBLIC_KEY is neither a PEM key nor a readable file")


class TokenVerifier:
    """Verifies tokens against the keys configured in settings."""

    def __init__(self, settings: Settings):
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.secret = settings.jwt_secret
        self.public_keys: dict[str | None, Any] = {}
        if settings.jwt_public_key:
            pem = _load_pem(settings.jwt_public_key)
            self.public_keys[None] = jwt.PyJWK.from_dict(
                json.loads(_pem_to_jwk_json(pem))).key
        if settings.jwt_jwks_file:
            jwks = json.loads(Path(settings.jwt_jwks_file).read_text())
            for entry in jwks.get("keys", []):
                self.public_keys[entry.get("kid")] = jwt.PyJWK.from_dict(entry).key
        if not self.secret and not self.public_keys:
            raise ValueError("no token verification key configured")
        # A client on a keep-alive connection sends the same token with every request; checking
        # its signature and claims was about 4 % of a profile read's CPU. Successes only.
        self._verified: dict[str, tuple[float, Principal]] = {}

    @property
    def algorithms(self) -> tuple[str, ...]:
        algs: tuple[str, ...] = ()
        if self.secret:
            algs += HMAC_ALGORITHMS
        if self.public_keys:
            algs += ASYMMETRIC_ALGORITHMS
        return algs

    def verify(self, token: str) -> Principal:
        now = time.time()  # PyJWT checks exp against the wall clock too
        hit = self._verified.get(token)
        if hit is not None and now < hit[0]:
            return hit[1]
        principal = self._verify(token)
        exp = float(principal.claims["exp"]) + LEEWAY_SECONDS
        if len(self._verified) >= VERIFIED_TOKENS_MAX:
            self._verified.clear()
        self._verified[token] = (min(exp, now + VERIFIED_TOKEN_SECONDS), principal)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        if alg in HMAC_ALGORITHMS:
            key: Any = self.secret
        else:
            kid = header.get("kid")
            if kid in self.public_keys:
                key = self.public_keys[kid]
            elif None in self.public_keys:  # the single configured key signs any kid
                key = self.public_keys[None]
            else:
                raise AuthError(f"unknown signing key id {kid!r}")
            expected_family = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
            # Algorithm confusion: the key's family must match the token's algorithm.
            if not _key_matches(key, expected_family):
                raise AuthError(f"token algorithm {alg} does not match the signing key")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer is not accepted") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return Principal(sub=str(claims["sub"]), tenant_id=tenant_from_claims(claims),
                         roles=roles_from_claims(claims), claims=claims)


def _key_matches(key: Any, family: type) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if family is RSAAlgorithm:
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey)


def _pem_to_jwk_json(pem: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(key)
    raise ValueError("UBI_JWT_PUBLIC_KEY must be an RSA or EC public key")


class Verifier(Protocol):
    def verify(self, token: str) -> Principal: ...


def principal_from_iam(token: str, sub: str, scope: Iterable[str]) -> Principal:
    """The caller of a token IAM vouched for: subject and roles as IAM says (its ``scope``);
    the tenant from the token's own ``tenant_id`` claim, else from IAM's subject
    (``tenant:user`` / ``user@tenant``), since IAM's answer names no tenant. The claims are read
    without checking the signature: that is only sound because IAM has just verified it."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}  # not a JWT IAM's stand-ins would know; no tenant then
    return Principal(sub=sub, tenant_id=tenant_from_claims({"tenant_id": claims.get("tenant_id"),
                                                            "sub": sub}),
                     roles=roles_from_claims({"scope": list(scope)}), claims=claims)


class RemoteTokenVerifier:
    """Verifies tokens at IAM (``UBI_IAM_URL``): cached answers, a breaker, and access that
    fails closed (503 naming IAM) when IAM cannot answer."""

    def __init__(self, settings: Settings):
        from ubi.integrations.iam import IamClient

        self.client = IamClient(settings)

    def verify(self, token: str) -> Principal:
        from ubi.integrations.iam import IamRejected, IamUnavailable

        try:
            verdict = self.client.verify(token)
        except IamRejected as exc:
            raise AuthError(f"token rejected by IAM: {exc}") from exc
        except IamUnavailable as exc:
            raise DependencyUnavailable("iam", exc.reason,
                                        retry_after=exc.retry_after) from exc
        return principal_from_iam(token, verdict.sub, verdict.scope)


@functools.lru_cache(maxsize=4)
def _verifier_for(settings: Settings) -> Verifier:
    if settings.iam_url:
        return RemoteTokenVerifier(settings)
    return TokenVerifier(settings)


def verifier(settings: Settings | None = None) -> Verifier:
    """The deployment's verifier: IAM when ``UBI_IAM_URL`` is set, else the local keys."""
    return _verifier_for(settings or get_settings())


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthError("missing Authorization header (Bearer token required)")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()


def current_principal() -> Principal:
    """The verified caller of this request (verified once per request: a refusal too, so the
    rate limiter and the view ask IAM once between them)."""
    principal = g.get("ubi_principal")
    if principal is None:
        refused: ApiError | None = g.get("ubi_auth_error")
        if refused is not None:
            raise refused
        from flask import current_app

        settings: Settings = current_app.config["UBI_SETTINGS"]
        try:
            principal = verifier(settings).verify(bearer_token())
        except ApiError as exc:
            g.ubi_auth_error = exc
            raise
        g.ubi_principal = principal
    return principal


def requires(*roles: str) -> Callable[[F], F]:
    """View decorator: authenticate, then require one of ``roles``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            current_principal().require(*roles)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def mint_token(*, sub: str, tenant_id: str | None, roles: Iterable[str],
               settings: Settings | None = None, ttl: timedelta = timedelta(hours=1),
               private_key_pem: str | None = None, kid: str | None = None,
               now: datetime | None = None, extra: dict[str, Any] | None = None) -> str:
    """A development token (HS256 with the configured secret, or RS256/ES256 with a key)."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub, "roles": sorted(set(roles)), "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer, "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    claims.update(extra or {})
    headers = {"kid": kid} if kid else None
    if private_key_pem:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(private_key_pem.encode(), password=None)
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        # an RSA or EC key, as documented; jwt.encode rejects any other kind at runtime
        signing_key = cast("rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey", key)
        return jwt.encode(claims, signing_key, algorithm=alg, headers=headers)
    if not settings.jwt_secret:
        raise ValueError("no UBI_JWT_SECRET configured: pass a private key to sign with")
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256", headers=headers)
