"""Token verification and authorisation (SPEC §7) against a real endpoint."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from ubi.services.keys import generate_jwt_keypair
from ubi.web.auth import mint_token, verifier


def token_time() -> datetime:
    """Tokens are checked by PyJWT against the system clock (as the platform IAM issues them),
    not against UBI's clock: their lifetimes are minted on the system clock too."""
    return datetime.fromtimestamp(time.time(), UTC)


URL = "/v1/ubi/config/acme"


def _get(client, token: str | None, url: str = URL):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get(url, headers=headers)


def test_valid_token_is_accepted(client, tokens) -> None:
    resp = _get(client, tokens("acme", "ubi:read:tenant"))
    assert resp.status_code == 200, resp.json
    assert resp.json["version"] == 0
    assert resp.json["config"]["anomaly_thresholds"]["default"] == {"warn": 2.5, "critical": 3.5}


@pytest.mark.parametrize("case", ["missing", "not_bearer", "garbage", "expired", "audience",
                                  "issuer", "wrong_secret", "alg_none", "no_exp"])
def test_bad_tokens_are_401(client, settings, case: str) -> None:
    now = token_time()
    claims = {"sub": "u", "tenant_id": "acme", "roles": ["ubi:read:tenant"],
              "aud": settings.jwt_audience, "iss": settings.jwt_issuer,
              "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp())}
    secret = settings.jwt_secret
    headers = None
    if case == "missing":
        resp = client.get(URL)
    elif case == "not_bearer":
        resp = client.get(URL, headers={"Authorization": "Basic dTpw"})
    else:
        if case == "garbage":
            token = "not.a.token"
        elif case == "expired":
            claims["exp"] = int((now - timedelta(minutes=5)).timestamp())
            token = jwt.encode(claims, secret, algorithm="HS256")
        elif case == "audience":
            token = jwt.encode(claims | {"aud": "someone-else"}, secret, algorithm="HS256")
        elif case == "issuer":
            token = jwt.encode(claims | {"iss": "evil"}, secret, algorithm="HS256")
        elif case == "wrong_secret":
            token = jwt.encode(claims, "another-secret-0123456789abcdefXYZ", algorithm="HS256")
        elif case == "alg_none":
            def b64(obj: dict[str, object]) -> str:
                return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
            token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
        else:  # no_exp
            claims.pop("exp")
            token = jwt.encode(claims, secret, algorithm="HS256", headers=headers)
        resp = _get(client, token)
    assert resp.status_code == 401, (case, resp.json)
    assert resp.json["code"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_rs256_and_algorithm_confusion(database, settings) -> None:
    """With an RSA public key configured, RS256 tokens verify; an HS256 token "signed" with the
    public key text (the classic confusion attack) and RS tokens from another key are 401."""
    from ubi.web.app import create_app

    private_pem, public_pem = generate_jwt_keypair("RS256")
    other_private, _ = generate_jwt_keypair("RS256")
    rs_settings = settings.replace(jwt_secret=None, jwt_public_key=public_pem)
    client = create_app(rs_settings).test_client()

    good = mint_token(sub="u", tenant_id="acme", roles=["ubi:read:tenant"],
                      settings=rs_settings, private_key_pem=private_pem)
    assert _get(client, good).status_code == 200

    now = token_time()
    claims = {"sub": "u", "tenant_id": "acme", "roles": ["ubi:read:tenant"],
              "aud": settings.jwt_audience, "iss": settings.jwt_issuer,
              "iat": int(now.timestamp()), "exp": int((now + timedelta(hours=1)).timestamp())}
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}." \
                    f"{b64(json.dumps(claims).encode())}"
    forged_sig = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(forged_sig)}"
    resp = _get(client, forged)
    assert resp.status_code == 401 and "algorithm" in resp.json["message"]

    wrong_key = mint_token(sub="u", tenant_id="acme", roles=["ubi:read:tenant"],
                           settings=rs_settings, private_key_pem=other_private)
    assert _get(client, wrong_key).status_code == 401

    es_private, _ = generate_jwt_keypair("ES256")
    es_token = mint_token(sub="u", tenant_id="acme", roles=["ubi:read:tenant"],
                          settings=rs_settings, private_key_pem=es_private)
    assert _get(client, es_token).status_code == 401  # ES token against an RSA key


def test_missing_role_and_other_tenant_are_403(client, tokens) -> None:
    resp = _get(client, tokens("acme", "ubi:read:actor"))
    assert resp.status_code == 403 and "ubi:read:tenant" in resp.json["message"]
    resp = _get(client, tokens("globex", "ubi:read:tenant"))
    assert resp.status_code == 403 and "acme" in resp.json["message"]


def test_privileged_roles_cross_tenants_and_scope_claim(client, tokens, settings) -> None:
    assert _get(client, tokens(None, "product_ops")).status_code == 200
    assert _get(client, tokens("globex", "admin")).status_code == 200
    scoped = mint_token(sub="acme:svc", tenant_id=None, roles=[], settings=settings,
                        extra={"scope": "ubi:read:tenant ubi:read:team"})
    assert _get(client, scoped).status_code == 200  # tenant from a tenant:user subject


def test_bad_tenant_id_in_path_is_400(client, tokens) -> None:
    resp = _get(client, tokens("acme", "ubi:read:tenant"), url="/v1/ubi/config/bad%20tenant!")
    assert resp.status_code == 400
    assert resp.json["errors"] == {"tenant_id": "1-64 characters of [A-Za-z0-9_.-]"}


def test_a_remembered_token_is_refused_once_it_expires(client, settings) -> None:
    """Verified tokens are reused without a second signature check (a keep-alive client sends
    the same one every request), but never past the token's exp plus the leeway PyJWT allows:
    a token 27 s past its exp passes, and is a 401 four seconds later."""
    from ubi.web.auth import LEEWAY_SECONDS

    now = token_time()
    token = mint_token(sub="u", tenant_id="acme", roles=["ubi:read:tenant"], settings=settings,
                       now=now - timedelta(hours=1),
                       ttl=timedelta(hours=1, seconds=3 - LEEWAY_SECONDS))
    assert _get(client, token).status_code == 200
    assert _get(client, token).status_code == 200
    remembered = verifier(settings)
    assert remembered.verify(token) is remembered.verify(token)  # verified once, reused
    time.sleep(4)
    resp = _get(client, token)
    assert resp.status_code == 401, resp.json
    assert resp.json["message"] == "token expired"
