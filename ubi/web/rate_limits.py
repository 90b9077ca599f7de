"""Request rate limits per tenant and per token (SPEC §6: 429), counted in Redis.

Four limits, from the settings (``UBI_RATE_LIMIT_*``): ingestion (``POST /events``) and every
other limited route ("read": reads, batch status, config, feedback, privacy),
each per token and per tenant. Both limits of a request apply; the first one exceeded answers
429 with ``Retry-After`` (seconds) and the usual error body naming the limit. Health,
readiness, metrics and the API docs are never limited.

What a limit counts by (no raw token and no raw subject is ever part of a key):

- per tenant: the tenant of the verified token (a token without a tenant, as privileged ones
  may be: a SHA-256 of its subject);
- per token: that, plus a SHA-256 of the raw bearer token;
- a request without a valid token (a 401 to come): the client's address, for both.

The counters are fixed windows (a window starts at its key's first hit) in Redis
(``REDIS_URL``, keys ``<UBI_QUEUE_PREFIX>ubi:ratelimit:...``), shared by every web process; on
the embedded default (no ``REDIS_URL``) they live in the process's memory.

The limiter fails open: when its storage fails, the request goes through unchecked, counted in
``ubi_rate_limit_fail_open_total`` and logged (at most once a minute per process). Checks then
pause for ``STORAGE_RETRY_SECONDS``, so that a Redis that hangs costs one timeout per pause
rather than one per request: rate limiting never holds up ingestion.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded

from ubi.observability.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED
from ubi.settings import Settings
from ubi.web.auth import Principal, bearer_token, current_principal
from ubi.web.errors import ApiError, ErrorSchema, error_response

log = logging.getLogger("ubi.web.rate_limits")

#: The view of ``POST /events`` (blueprint ``events``, class ``Events``).
INGEST_ENDPOINT = "events.Events"
#: Blueprints and endpoints that are never limited: health, readiness and metrics; the OpenAPI
#: spec and Swagger UI (flask-smorest's ``api-docs`` blueprint) and Swagger UI's files.
NEVER_LIMITED_BLUEPRINTS = frozenset({"health", "api-docs"})
NEVER_LIMITED_ENDPOINTS = frozenset({"swagger_ui_asset", "static"})
#: The routes of the ``health`` blueprint, below the API prefix (for the OpenAPI docs).
NEVER_LIMITED_ROUTES = ("/health", "/ready", "/metrics")
#: Seconds the checks pause after the storage failed (requests pass unchecked meanwhile).
STORAGE_RETRY_SECONDS = 5.0
#: Seconds a Redis call of the limiter may take: far above a healthy Redis's, short enough
#: that an unreachable one delays the request that finds out by little.
STORAGE_TIMEOUT_SECONDS = 0.5
#: At most one log line per this many seconds and process about the storage failing.
LOG_EVERY_SECONDS = 60.0
#: The OpenAPI response component of a 429.
RESPONSE_NAME = "RATE_LIMITED"


@dataclass(frozen=True)
class LimitKind:
    """One of the four limits: its name (metric label, counter scope, settings field)."""

    name: str
    ingest: bool
    per: str  # "token" | "tenant"

    @property
    def setting(self) -> str:
        return f"rate_limit_{self.name}"

    @property
    def description(self) -> str:
        requests = "ingestion requests" if self.ingest else "requests"
        return f"{requests} for this {self.per}"


#: Token limits first: for limits of the same period, a request its token's limit refuses does
#: not use up its tenant's budget.
KINDS: tuple[LimitKind, ...] = (
    LimitKind("ingest_token", True, "token"),
    LimitKind("ingest_tenant", True, "tenant"),
    LimitKind("read_token", False, "token"),
    LimitKind("read_tenant", False, "tenant"),
)
_KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


def never_limited() -> bool:
    """Whether this request is exempt from every limit (unknown paths too: they are 404s)."""
    return (request.endpoint is None or request.blueprint in NEVER_LIMITED_BLUEPRINTS
            or request.endpoint in NEVER_LIMITED_ENDPOINTS)


def _is_ingest() -> bool:
    return request.method == "POST" and request.endpoint == INGEST_ENDPOINT


def _is_not_ingest() -> bool:
    return not _is_ingest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _caller() -> Principal | None:
    """The verified caller, or None when the request has no valid token (the view answers it
    with the same error later)."""
    try:
        return current_principal()
    except ApiError:
        return None


def _keys() -> tuple[str, str]:
    """(tenant key, token key) of this request, computed once."""
    keys: tuple[str, str] | None = g.get("ubi_rate_limit_keys")
    if keys is None:
        principal = _caller()
        if principal is None:
            client = f"client:{request.remote_addr or 'unknown'}"
            keys = (client, client)
        else:
            tenant = (f"tenant:{principal.tenant_id}" if principal.tenant_id
                      else f"subject:{_digest(principal.sub)}")
            keys = (tenant, f"{tenant}:token:{_digest(bearer_token())}")
        g.ubi_rate_limit_keys = keys
    return keys


def tenant_key() -> str:
    return _keys()[0]


def token_key() -> str:
    return _keys()[1]


def _tenant_label() -> str:
    try:
        principal = _caller()
    except Exception:  # a label must not fail the request it counts
        return "none"
    return (principal.tenant_id if principal else None) or "none"


class FailOpenLimiter(Limiter):
    """flask-limiter's ``Limiter`` that lets a request through when its storage fails.

    flask-limiter alone answers such a request with an error (500), or with
    ``swallow_errors`` lets it through with a traceback in the log per request and nothing to
    count; its in-memory fallback keeps limiting, per process, and re-checks the storage at
    ever longer intervals. Here the failure is counted and logged at a bounded rate instead,
    and the storage is tried again after ``STORAGE_RETRY_SECONDS``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._unchecked = 0
        self._logged_at = -math.inf

    def _check_request_limit(self, callable_name: str | None = None,
                             in_middleware: bool = True) -> None:
        if time.monotonic() < self._paused_until:
            if not never_limited():
                self._let_through("paused", None)
            return
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except RateLimitExceeded:
            raise
        except Exception as exc:
            self._paused_until = time.monotonic() + STORAGE_RETRY_SECONDS
            self._let_through("error", exc)

    def _let_through(self, reason: str, exc: Exception | None) -> None:
        RATE_LIMIT_FAIL_OPEN.labels(tenant_id=_tenant_label(), reason=reason).inc()
        with self._lock:
            self._unchecked += 1
            now = time.monotonic()
            if exc is None or now - self._logged_at < LOG_EVERY_SECONDS:
                return
            unchecked, self._unchecked = self._unchecked, 0
            self._logged_at = now
        log.warning(
            "rate limits not checked, requests pass: the limiter's storage failed (%s: %s); "
            "%d request(s) unchecked since the last report, next try in %.0f s",
            type(exc).__name__, exc, unchecked, STORAGE_RETRY_SECONDS,
            extra={"ubi": {"error": type(exc).__name__, "unchecked_requests": unchecked}})


def _rate_limited(limiter: Limiter, exc: RateLimitExceeded) -> Response:
    """The 429: the usual error body naming the limit, and ``Retry-After`` in seconds."""
    kind = _KINDS_BY_NAME.get(str(exc.limit.scope))
    item = exc.limit.limit
    window = max(1, int(item.get_expiry()))
    retry_after = window
    current = limiter.current_limit
    if current is not None and current.breached:
        # When the storage failed since the hit, the window is an upper bound.
        with contextlib.suppress(Exception):
            retry_after = min(window, max(1, math.ceil(current.reset_at - time.time())))
    name = kind.name if kind else "unknown"
    RATE_LIMITED.labels(tenant_id=_tenant_label(), limit=name).inc()
    described = kind.description if kind else "requests"
    return error_response(
        429, f"too many {described}: the limit is {item} ({name}); retry after {retry_after} s",
        code="rate_limited",
        errors={"limit": name, "rate": str(item), "retry_after": retry_after},
        headers={"Retry-After": str(retry_after)})


def install(app: Flask, settings: Settings) -> Limiter | None:
    """Limit ``app``'s requests as ``settings`` say (nothing when they are turned off).

    Call it after the app's own ``before_request`` hooks that the limiter's logs need (the
    request id)."""
    if not settings.rate_limit_enabled:
        return None
    limits: list[str | Callable[[], str] | ApplicationLimit] = [
        ApplicationLimit(getattr(settings, kind.setting),
                         key_function=token_key if kind.per == "token" else tenant_key,
                         scope=kind.name,
                         exempt_when=_is_not_ingest if kind.ingest else _is_ingest)
        for kind in KINDS]
    storage_options: dict[str, str | int] = {"key_prefix": f"{settings.queue_prefix}ubi:ratelimit"}
    if settings.redis_url:
        storage_uri = settings.redis_url
        # redis-py takes float timeouts; flask-limiter's annotation is narrower than its use.
        timeouts: dict[str, Any] = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                                    "socket_timeout": STORAGE_TIMEOUT_SECONDS}
        storage_options.update(timeouts)
    else:
        storage_uri = "memory://"
    limiter = FailOpenLimiter(
        key_func=tenant_key, application_limits=limits, strategy="fixed-window",
        storage_uri=storage_uri, storage_options=storage_options, headers_enabled=False,
        swallow_errors=False, in_memory_fallback_enabled=False)
    limiter.request_filter(never_limited)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, functools.partial(_rate_limited, limiter))
    # One INFO line per refused request would let a flood of 429s flood the log as well;
    # ``ubi_rate_limited_total`` counts them.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    return limiter


class RateLimitDocs(BasePlugin):
    """apispec plugin documenting the 429 on every limited operation: flask-smorest documents
    alternative responses per view only, and every route but the health ones is limited."""

    def __init__(self, enabled: bool, api_prefix: str) -> None:
        self.enabled = enabled
        self.never_limited = frozenset(f"{api_prefix}{route}" for route in NEVER_LIMITED_ROUTES)

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        spec.components.response(RESPONSE_NAME, {
            "description": "Too many requests: a rate limit of the caller's token or tenant "
                           "(UBI_RATE_LIMIT_*) is exceeded; the body names it",
            "content": {"application/json": {"schema": ErrorSchema}},
            "headers": {"Retry-After": {
                "description": "seconds until the limit lets requests through again",
                "schema": {"type": "integer", "minimum": 1}}},
        }, lazy=True)

    def operation_helper(self, path: str | None = None, operations: dict[Any, Any] | None = None,
                         **kwargs: Any) -> None:
        if not self.enabled or path in self.never_limited:
            return
        for operation in (operations or {}).values():
            operation.setdefault("responses", {})[429] = RESPONSE_NAME
