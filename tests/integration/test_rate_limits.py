"""Rate limits per token and per tenant, counted in the real Redis (issue 17, SPEC §6: 429).

Each test makes its own app with small limits (windows of a minute, which a test never
outlasts; a window starts at its first hit, not on the clock) and its own tenants, so the
counters of one test or run never meet another's (this run's keys carry its queue prefix).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from limits.storage import MemoryStorage
from prometheus_client.parser import text_string_to_metric_families

from tests.support.envelopes import envelope, post_events
from tests.support.tcp_proxy import TcpProxy
from ubi.settings import SettingsError, load_settings

READ_ROLE = "ubi:read:tenant"


def _tenant() -> str:
    return f"rl-{uuid.uuid4().hex[:10]}"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _read(client, tenant: str, token: str | None):
    """One limited read: the tenant's config."""
    return client.get(f"/v1/ubi/config/{tenant}", headers=_auth(token) if token else {})


def _counted(client, name: str, **labels: str) -> int:
    """A counter's value summed over the samples with ``labels``, as scraped."""
    page = client.get("/v1/ubi/metrics").get_data(as_text=True)
    return sum(int(sample.value) for family in text_string_to_metric_families(page)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


@pytest.fixture
def limited(settings, database):
    """``limited(**settings_changes)``: a test client of an app with those settings."""
    from ubi.web.app import create_app

    def make(**changes: Any):
        app = create_app(settings.replace(**changes))
        app.config["TESTING"] = True
        return app.test_client()

    return make


@pytest.fixture
def dead_redis_url() -> Iterator[str]:
    """A Redis URL whose port nothing listens on (held bound, so nothing can take it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        sock.close()


def test_a_token_over_its_limit_gets_429_with_retry_after_and_the_error_body(
        limited, tokens, settings) -> None:
    client = limited(rate_limit_read_token="2/minute", rate_limit_read_tenant="100/minute")
    tenant = _tenant()
    token = tokens(tenant, READ_ROLE)
    refused_before = _counted(client, "ubi_rate_limited_total", tenant_id=tenant,
                              limit="read_token")
    started = time.monotonic()  # the 1-minute window starts at the first request, not before
    assert [_read(client, tenant, token).status_code for _ in range(2)] == [200, 200]

    resp = _read(client, tenant, token)
    assert resp.status_code == 429
    # Retry-After is the time left in the window: at most a minute, less what has elapsed
    elapsed = time.monotonic() - started
    assert 60 - elapsed - 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.json["code"] == "rate_limited"
    assert resp.json["errors"] == {"limit": "read_token", "rate": "2 per 1 minute",
                                   "retry_after": int(resp.headers["Retry-After"])}
    assert "too many requests for this token" in resp.json["message"]
    assert "2 per 1 minute" in resp.json["message"]
    assert resp.headers["X-Request-ID"]
    assert _counted(client, "ubi_rate_limited_total", tenant_id=tenant,
                    limit="read_token") == refused_before + 1

    # The counters are in Redis under this run's prefix, keyed by the tenant and a hash of the
    # token: never the token itself.
    keys = [k.decode() for k in redis.Redis.from_url(settings.redis_url).scan_iter(
        match=f"{settings.queue_prefix}ubi:ratelimit:*{tenant}*", count=1000)]
    assert keys and any(":token:" in k for k in keys)
    assert not any(token in k or token.split(".")[2] in k for k in keys)


def test_token_and_tenant_limits_both_apply_and_other_tenants_are_unaffected(
        limited, tokens) -> None:
    client = limited(rate_limit_read_token="3/minute", rate_limit_read_tenant="4/minute")
    tenant, other = _tenant(), _tenant()
    first = tokens(tenant, READ_ROLE, sub="first")
    second = tokens(tenant, READ_ROLE, sub="second")

    assert [_read(client, tenant, first).status_code for _ in range(3)] == [200, 200, 200]
    refused = _read(client, tenant, first)
    assert refused.status_code == 429 and refused.json["errors"]["limit"] == "read_token"
    # Another token of the tenant has a budget of its own, within the tenant's: the fourth
    # request of the tenant passes (the refused one did not count against the tenant)...
    assert _read(client, tenant, second).status_code == 200
    # ...and the fifth exceeds the tenant's limit, whichever token makes it.
    refused = _read(client, tenant, second)
    assert refused.status_code == 429
    assert refused.json["errors"]["limit"] == "read_tenant"
    assert "too many requests for this tenant" in refused.json["message"]
    assert "4 per 1 minute" in refused.json["message"]

    # Another tenant is not affected.
    stranger = tokens(other, READ_ROLE, sub="first")
    assert [_read(client, other, stranger).status_code for _ in range(3)] == [200, 200, 200]


def test_ingestion_has_limits_of_its_own(limited, tokens, broker, clean_db) -> None:
    client = limited(rate_limit_ingest_token="2/minute", rate_limit_ingest_tenant="100/minute",
                     rate_limit_read_token="2/minute")
    tenant = _tenant()
    token = tokens(tenant, "ubi:write:events", READ_ROLE)
    assert [post_events(client, token, [envelope(tenant)]).status_code
            for _ in range(2)] == [202, 202]
    refused = post_events(client, token, [envelope(tenant)])
    assert refused.status_code == 429
    assert refused.json["errors"]["limit"] == "ingest_token"
    assert "too many ingestion requests for this token" in refused.json["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Reads count apart from ingestion (and the other way round).
    assert [_read(client, tenant, token).status_code for _ in range(3)] == [200, 200, 429]


def test_health_readiness_metrics_and_the_docs_are_never_limited(limited) -> None:
    from ubi.web.app import SWAGGER_UI_ASSETS

    client = limited(**{f"rate_limit_{kind}": "1/minute" for kind in (
        "ingest_token", "ingest_tenant", "read_token", "read_tenant")})
    for path in ("/v1/ubi/health", "/v1/ubi/ready", "/v1/ubi/metrics", "/v1/ubi/openapi.json",
                 "/v1/ubi/docs", f"{SWAGGER_UI_ASSETS}/swagger-ui.css"):
        statuses = {client.get(path).status_code for _ in range(4)}
        assert 429 not in statuses, path
    assert client.get("/v1/ubi/health").status_code == 200
    # The app does limit: a request without a token is counted by the client's address.
    assert [_read(client, _tenant(), None).status_code for _ in range(2)] == [401, 429]


def test_the_openapi_documents_the_429_of_every_limited_operation(app, client) -> None:
    spec = client.get("/v1/ubi/openapi.json").json
    response = spec["components"]["responses"]["RATE_LIMITED"]
    assert response["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert response["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    unlimited = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in {"get", "put", "post", "patch", "delete"}:
                ref = operation["responses"].get("429")
                if ref is None:
                    unlimited.add(path)
                else:
                    assert ref == {"$ref": "#/components/responses/RATE_LIMITED"}, path
    # Exactly the routes the limiter exempts at run time: those of the health blueprint.
    assert unlimited == {rule.rule for rule in app.url_map.iter_rules()
                         if rule.endpoint.startswith("health.")}
    assert unlimited == {"/v1/ubi/health", "/v1/ubi/ready", "/v1/ubi/metrics"}


def test_with_redis_unreachable_requests_pass_and_the_failure_is_counted(
        limited, tokens, broker, clean_db, dead_redis_url, caplog) -> None:
    client = limited(redis_url=dead_redis_url, rate_limit_read_token="1/minute",
                     rate_limit_ingest_token="1/minute")
    tenant = _tenant()
    token = tokens(tenant, "ubi:write:events", READ_ROLE)
    fail_open = "ubi_rate_limit_fail_open_total"
    before = {reason: _counted(client, fail_open, tenant_id=tenant, reason=reason)
              for reason in ("error", "paused")}
    with caplog.at_level(logging.WARNING, logger="ubi.web.rate_limits"):
        reads = [_read(client, tenant, token).status_code for _ in range(4)]
        posts = [post_events(client, token, [envelope(tenant)]).status_code for _ in range(2)]
    assert reads == [200] * 4 and posts == [202] * 2  # fails open: nothing refused or held
    counted = {reason: _counted(client, fail_open, tenant_id=tenant, reason=reason) - n
               for reason, n in before.items()}
    # The first request found the storage down; the others passed while the checks paused
    # (or, on a very slow machine, found it down again).
    assert counted["error"] >= 1 and sum(counted.values()) == 6, counted
    warnings = [r for r in caplog.records if r.name == "ubi.web.rate_limits"]
    assert len(warnings) == 1  # one line, not one per request
    assert "storage failed" in warnings[0].getMessage()
    assert "ConnectionError" in warnings[0].getMessage()


def test_limits_apply_again_once_redis_is_back(limited, tokens, settings, monkeypatch) -> None:
    from ubi.web import rate_limits

    monkeypatch.setattr(rate_limits, "STORAGE_RETRY_SECONDS", 0.2)
    upstream = urlsplit(settings.redis_url)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 6379).start()
    try:
        client = limited(redis_url=f"redis://127.0.0.1:{proxy.port}{upstream.path}",
                         rate_limit_read_token="2/minute")
        tenant = _tenant()
        token = tokens(tenant, READ_ROLE)
        assert _read(client, tenant, token).status_code == 200  # 1 of 2, counted in Redis
        proxy.stop()
        assert [_read(client, tenant, token).status_code for _ in range(3)] == [200] * 3
        proxy.start()
        time.sleep(0.3)  # the pause after the failure is over: the next request checks again
        assert [_read(client, tenant, token).status_code for _ in range(2)] == [200, 429]
    finally:
        proxy.stop()


def test_the_embedded_default_counts_in_memory(limited, tokens, settings) -> None:
    client = limited(redis_url=None, rate_limit_read_token="1/minute")
    limiters = client.application.extensions["limiter"]
    assert [type(limiter.storage) for limiter in limiters] == [MemoryStorage]
    tenant = _tenant()
    token = tokens(tenant, READ_ROLE)
    assert [_read(client, tenant, token).status_code for _ in range(2)] == [200, 429]
    assert not list(redis.Redis.from_url(settings.redis_url).scan_iter(
        match=f"*ubi:ratelimit:*{tenant}*", count=1000))


def test_limits_can_be_turned_off(limited, tokens) -> None:
    client = limited(rate_limit_enabled=False, rate_limit_read_token="1/minute")
    tenant = _tenant()
    token = tokens(tenant, READ_ROLE)
    assert [_read(client, tenant, token).status_code for _ in range(3)] == [200, 200, 200]
    spec = client.get("/v1/ubi/openapi.json").json
    assert "RATE_LIMITED" not in spec["components"].get("responses", {})


def test_limits_come_from_the_environment_and_a_typo_stops_the_start(tmp_path) -> None:
    env = {"UBI_DATA_DIR": str(tmp_path)}
    defaults = load_settings(env)
    assert defaults.rate_limit_enabled
    assert (defaults.rate_limit_ingest_tenant, defaults.rate_limit_ingest_token) == (
        "500/second", "250/second")
    changed = load_settings({**env, "UBI_RATE_LIMIT_READ_TOKEN": "5/second;100/minute",
                             "UBI_RATE_LIMIT_ENABLED": "0"})
    assert changed.rate_limit_read_token == "5/second;100/minute"
    assert not changed.rate_limit_enabled
    for name, value in (("UBI_RATE_LIMIT_INGEST_TENANT", "lots"),
                        ("UBI_RATE_LIMIT_READ_TENANT", "0/second"),
                        ("UBI_RATE_LIMIT_ENABLED", "maybe")):
        with pytest.raises(SettingsError, match=name):
            load_settings({**env, name: value})
