"""Tokens verified by IAM (SPEC §7, issue 20): with ``UBI_IAM_URL`` set, the API asks the IAM
stand-in over real HTTP, caches its answers in Redis until ``valid_until`` (≤ 60 s, on UBI's
clock, which the tests move instead of sleeping), fails closed with a 503 naming IAM when IAM
cannot answer and nothing is cached, honours a 429's ``Retry-After``, and stops calling IAM
while its breaker is open."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import jwt
import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from tests.conftest import SUITE_NOW
from tests.integration.conftest import standin_settings
from ubi import clock
from ubi.devservers.iam import IamStandIn
from ubi.integrations import breakers
from ubi.integrations import iam as iam_client
from ubi.integrations.dependencies import redis_client
from ubi.web import auth
from ubi.web.app import create_app

TENANT = "iamtest"
URL = f"/v1/ubi/config/{TENANT}"
RESET_SECONDS = 1.0

Mint = Callable[..., str]


@pytest.fixture
def iam(settings) -> Iterator[IamStandIn]:
    with IamStandIn(jwt_secret=settings.jwt_secret, audience=settings.jwt_audience,
                    issuer=settings.jwt_issuer) as server:
        yield server


@contextmanager
def iam_standin(settings: Any, url: str) -> Iterator[Any]:
    """Settings for the IAM stand-in at ``url``; no breaker, cached answer or hold-off of
    another test around it."""
    auth._verifier_for.cache_clear()
    with standin_settings(settings, "iam", url, reset_seconds=RESET_SECONDS,
                          forget=(iam_client.cache_prefix(settings),)) as configured:
        yield configured
    auth._verifier_for.cache_clear()


@pytest.fixture
def iam_settings(settings, iam) -> Iterator[Any]:
    with iam_standin(settings, iam.url) as configured:
        yield configured


@pytest.fixture
def api(database, iam_settings) -> FlaskClient:
    app = create_app(iam_settings)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def mint(tokens) -> Mint:
    """A fresh token of the test tenant (a new ``jti`` each: no two share a cache entry)."""

    def make(*roles: str, sub: str = "reader", **claims: Any) -> str:
        return str(tokens(TENANT, *(roles or ("ubi:read:tenant",)), sub=sub,
                          extra={"jti": uuid.uuid4().hex, **claims}))

    return make


def get(api: FlaskClient, token: str, url: str = URL) -> Any:
    return api.get(url, headers={"Authorization": f"Bearer {token}"})


def calls(iam: IamStandIn) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(f"{iam.url}/_received", timeout=5).json()["calls"]
    return found


def fault(iam: IamStandIn, **body: Any) -> None:
    requests.post(f"{iam.url}/_faults", json=body, timeout=5).raise_for_status()


def assert_iam_unavailable(resp: Any) -> None:
    assert resp.status_code == 503, resp.json
    assert resp.json["code"] == "dependency_unavailable"
    assert resp.json["errors"] == {"dependency": "iam"}
    assert resp.json["message"].startswith("iam is unavailable")
    assert int(resp.headers["Retry-After"]) >= 1


def gauge() -> float | None:
    return REGISTRY.get_sample_value("ubi_circuit_breaker_state", {"service": "iam"})


def test_a_token_iam_vouches_for_is_accepted_and_its_answer_cached(
        api, iam, iam_settings, mint) -> None:
    token = mint()
    first = get(api, token)
    assert first.status_code == 200, first.json
    assert get(api, token).status_code == 200
    [call] = calls(iam)  # the second request was answered from the cache
    assert call["status"] == 200 and call["sub"] == "reader"
    # The tenant is the token's: another tenant's config is refused.
    assert get(api, token, "/v1/ubi/config/someone-else").status_code == 403
    # Cached in Redis under a hash of the token, never the token itself.
    client = redis_client(iam_settings)
    assert client is not None
    keys = [k.decode() for k in client.scan_iter(iam_client.cache_prefix(iam_settings) + "*")]
    assert keys == [iam_client.cache_prefix(iam_settings) + "verify:"
                    + iam_client.token_key(token)]
    assert all(token not in str(client.get(k)) for k in keys)


def test_roles_are_what_iam_grants(api, iam, iam_settings, mint) -> None:
    resp = get(api, mint("ubi:read:team"))  # IAM grants the team role only
    assert resp.status_code == 403 and resp.json["code"] == "forbidden"


def test_a_token_iam_rejects_is_401(api, iam, iam_settings, mint, settings) -> None:
    foreign = auth.mint_token(sub="x", tenant_id=TENANT, roles=["ubi:read:tenant"],
                              settings=settings.replace(jwt_secret="another-secret-" + "9" * 32))
    for token in (foreign, "not.a.token"):
        resp = get(api, token)
        assert resp.status_code == 401, resp.json
        assert resp.json["code"] == "unauthorized"
        assert "rejected by IAM" in resp.json["message"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert [c["status"] for c in calls(iam)] == [401, 401]  # IAM decided, not UBI's keys


def test_iam_down_and_no_cached_answer_is_503_naming_iam(api, iam, iam_settings, mint) -> None:
    fault(iam, mode="down")
    resp = get(api, mint())
    assert_iam_unavailable(resp)
    assert "unreachable" in resp.json["message"]
    assert len(calls(iam)) == 1  # one call per request: the rate limiter reuses the refusal


def test_a_cached_answer_serves_while_iam_is_down_until_it_expires(
        api, iam, iam_settings, mint, shared_clock) -> None:
    shared_clock.now = SUITE_NOW  # frozen: the stand-in's valid_until is SUITE_NOW + 60 s
    token = mint()
    assert get(api, token).status_code == 200
    fault(iam, mode="down")
    shared_clock.advance(timedelta(seconds=59))
    assert get(api, token).status_code == 200
    assert len(calls(iam)) == 1
    shared_clock.advance(timedelta(seconds=1))  # valid_until reached: IAM must answer again
    assert_iam_unavailable(get(api, token))
    assert len(calls(iam)) == 2


def test_the_cache_never_trusts_an_answer_for_more_than_60_seconds(
        database, settings, mint, shared_clock) -> None:
    shared_clock.now = SUITE_NOW
    with (IamStandIn(jwt_secret=settings.jwt_secret, ttl=3600) as lenient,
          iam_standin(settings, lenient.url) as configured):
        api = create_app(configured).test_client()
        token = mint()
        assert get(api, token).status_code == 200
        fault(lenient, mode="down")
        shared_clock.advance(timedelta(seconds=60))
        assert_iam_unavailable(get(api, token))


def test_a_429_from_iam_is_honoured_until_its_retry_after(
        api, iam, iam_settings, mint, shared_clock) -> None:
    shared_clock.now = SUITE_NOW
    known = mint()
    assert get(api, known).status_code == 200  # cached for 60 s
    fault(iam, mode="429", retry_after=30, next_n=1)
    first = mint()
    resp = get(api, first)
    assert_iam_unavailable(resp)
    assert resp.headers["Retry-After"] == "30"
    assert len(calls(iam)) == 2

    shared_clock.advance(timedelta(seconds=20))
    other = get(api, mint())  # IAM is not asked again before its Retry-After
    assert_iam_unavailable(other)
    assert other.headers["Retry-After"] == "10"
    assert get(api, known).status_code == 200  # cached answers still serve
    assert len(calls(iam)) == 2
    assert breakers.breaker_state("iam", iam_settings) == "closed"  # an answer, not a failure

    shared_clock.advance(timedelta(seconds=10))
    assert get(api, first).status_code == 200
    assert [c["status"] for c in calls(iam)] == [200, 429, 200]


def test_the_breaker_opens_and_iam_sees_no_calls_while_it_is_open(
        api, iam, iam_settings, mint) -> None:
    fault(iam, mode="down")
    for _ in range(3):  # UBI_BREAKER_FAIL_MAX failures in a row open it
        assert_iam_unavailable(get(api, mint()))
    assert len(calls(iam)) == 3
    assert breakers.breaker_state("iam", iam_settings) == "open"
    assert gauge() == 2.0

    held = get(api, mint())
    assert_iam_unavailable(held)
    assert "circuit breaker open" in held.json["message"]
    assert len(calls(iam)) == 3  # cut off: no call reached IAM
    ready = create_app(iam_settings).test_client().get("/v1/ubi/ready")
    assert ready.status_code == 200 and ready.json is not None
    assert ready.json["status"] == "degraded"
    assert ready.json["checks"]["iam"]["degraded"]
    assert "cached answers only" in ready.json["checks"]["iam"]["detail"]

    requests.delete(f"{iam.url}/_faults", timeout=5).raise_for_status()
    time.sleep(RESET_SECONDS + 1.1)  # the system clock; the shared opening time is whole seconds
    assert get(api, mint()).status_code == 200  # the probe succeeds: closed again
    assert breakers.breaker_state("iam", iam_settings) == "closed"
    assert gauge() == 0.0
    back = create_app(iam_settings).test_client().get("/v1/ubi/ready").json
    assert back is not None and back["status"] == "ready"


def test_a_revoked_token_stays_valid_only_until_its_cached_valid_until(
        api, iam, iam_settings, mint, shared_clock) -> None:
    shared_clock.now = SUITE_NOW
    token = mint()
    assert get(api, token).status_code == 200
    requests.post(f"{iam.url}/_revoked", json={"token": token}, timeout=5).raise_for_status()
    shared_clock.advance(timedelta(seconds=30))
    assert get(api, token).status_code == 200  # the cached answer still serves
    shared_clock.advance(timedelta(seconds=30))
    resp = get(api, token)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]
    assert [c["status"] for c in calls(iam)] == [200, 401]


def test_revoking_by_subject_and_by_jti(iam, iam_settings, mint) -> None:
    client = iam_client.IamClient(iam_settings)
    by_sub, by_jti, kept = mint(sub="gone"), mint(sub="stays"), mint(sub="stays")
    for body in ({"sub": "gone"}, {"jti": jwt_id(by_jti)}):
        requests.post(f"{iam.url}/_revoked", json=body, timeout=5).raise_for_status()
    for token in (by_sub, by_jti):
        with pytest.raises(iam_client.IamRejected, match="revoked"):
            client.verify(token)
    assert client.verify(kept).sub == "stays"
    bad = requests.post(f"{iam.url}/_revoked", json={"sub": "a", "jti": "b"}, timeout=5)
    assert bad.status_code == 400


def jwt_id(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_without_redis_the_cache_is_the_processes_own(iam, iam_settings, mint,
                                                       shared_clock) -> None:
    shared_clock.now = SUITE_NOW
    local = iam_settings.replace(redis_url=None)  # the embedded default's breaker and cache
    client = iam_client.IamClient(local)
    assert isinstance(client.cache, iam_client.MemoryCache)
    token = mint()
    verdict = client.verify(token)
    assert verdict.valid_until == SUITE_NOW + timedelta(seconds=60)
    assert verdict.scope == ("ubi:read:tenant",)
    fault(iam, mode="5xx")
    assert client.verify(token) == verdict
    shared_clock.advance(timedelta(seconds=60))
    with pytest.raises(iam_client.IamUnavailable, match="HTTP 503"):
        client.verify(token)
    assert len(calls(iam)) == 2


def test_the_redis_cache_and_hold_off_are_shared_between_processes(iam_settings) -> None:
    client = redis_client(iam_settings)
    assert client is not None
    prefix = iam_client.cache_prefix(iam_settings)
    one, two = iam_client.RedisCache(client, prefix), iam_client.RedisCache(client, prefix)
    now = clock.utcnow()
    verdict = iam_client.Verdict("acme:ann", ("ubi:read:team",), now + timedelta(seconds=10))
    one.put("k", verdict, now)
    assert two.get("k", now) == verdict
    assert two.get("k", now + timedelta(seconds=10)) is None  # expiry on UBI's clock
    ttl = client.ttl(prefix + "verify:k")  # -2 when the key is missing, -1 without expiry
    assert isinstance(ttl, int) and 1 <= ttl <= 11  # Redis drops it after that
    one.hold_off(now + timedelta(seconds=30), now)
    two.hold_off(now + timedelta(seconds=5), now)  # a shorter wait does not shorten it
    assert two.hold_off_until(now) == now + timedelta(seconds=30)
    assert one.hold_off_until(now + timedelta(seconds=30)) is None


def test_ubi_devserver_iam_serves_the_stand_in(settings, mint) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ubi.cli", "devserver", "iam", "--port", "0",
         "--audience", settings.jwt_audience, "--ttl", "15"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # the secret: from env
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("IAM stand-in (development and tests only) listening on "), line
        base = line.split()[8].rstrip(";")
        answer = requests.post(f"{base}/iam/v1/verify", json={"token": mint()}, timeout=5)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["sub"] == "reader" and body["scope"] == ["ubi:read:tenant"]
        until = iam_client.parse_valid_until(body["valid_until"])
        assert until is not None
        assert timedelta(seconds=10) < until - clock.utcnow() <= timedelta(seconds=15)
        refused = requests.post(f"{base}/iam/v1/verify", json={"token": "x"}, timeout=5)
        assert refused.status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
