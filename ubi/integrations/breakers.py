"""Circuit breakers and HTTP calls of the outside services (ERIS, IAM, Data Governance).

Every call to an outside service goes through :func:`call`: one pybreaker breaker per service,
``UBI_HTTP_TIMEOUT`` on connect and read, and one rule for what counts as the service failing:
5xx, timeouts and connection errors count towards opening the breaker; any other answer (a
4xx, a 429) is an answer, not a failure, and is returned to the client module to interpret.
After ``UBI_BREAKER_FAIL_MAX`` failures in a row the breaker opens and calls fail at once,
without touching the service, until ``UBI_BREAKER_RESET_SECONDS`` have passed; then a single
probe call decides (half-open).

With ``REDIS_URL`` a breaker's state lives in Redis, so every worker process (and
``GET /ready``) shares one breaker per service; on the embedded default it is per process.
pybreaker measures the open interval on the system clock; in Redis it keeps the opening time
in whole seconds, rounded up here so that a breaker stays open at least the reset interval.
The state is the gauge ``ubi_circuit_breaker_state{service}`` (0 closed, 1 half-open, 2 open).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pybreaker
import redis
import requests

from ubi.observability.metrics import CIRCUIT_BREAKER_STATE
from ubi.settings import Settings, get_settings

log = logging.getLogger("ubi.integrations")

#: The outside services, by the setting that names their URL.
SERVICES = {"eris": "eris_url", "iam": "iam_url", "governance": "governance_url"}
#: Gauge values of ``ubi_circuit_breaker_state``.
STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1,
                pybreaker.STATE_OPEN: 2}
#: A Retry-After beyond this is read as this (a misbehaving server cannot park work for longer
#: than a normal backoff step would).
MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True)
class Failure:
    """Why a call did not get an answer the client can use. ``attempted`` is False when no
    call was made (the breaker is open)."""

    reason: str
    status_code: int | None = None
    retry_after: float | None = None
    attempted: bool = True
    #: True for the failing call that opened the breaker.
    opened: bool = False


class Unavailable(Exception):
    """The service failed or is cut off by its open breaker; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def retry_after_seconds(value: str | None, *, now_epoch: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if now_epoch is None:
            from ubi import clock

            now_epoch = clock.utcnow().timestamp()
        seconds = when.timestamp() - now_epoch
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class _GaugeListener(pybreaker.CircuitBreakerListener):
    def __init__(self, service: str) -> None:
        self.service = service

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any,
                     new_state: Any) -> None:
        name = getattr(new_state, "name", str(new_state))
        CIRCUIT_BREAKER_STATE.labels(service=self.service).set(STATE_VALUES.get(name, 0))
        log.warning("%s circuit breaker %s -> %s", self.service,
                    getattr(old_state, "name", old_state), name,
                    extra={"ubi": {"service": self.service, "breaker": name}})


_breakers: dict[tuple[Any, ...], pybreaker.CircuitBreaker] = {}
#: Breakers of this process alone, used while their Redis state cannot be set up.
_local_breakers: dict[tuple[Any, ...], pybreaker.CircuitBreaker] = {}
_redis_retry_at: dict[tuple[Any, ...], float] = {}
#: While Redis is down, a breaker looks for it again after this pause (not on every call).
REDIS_RETRY_SECONDS = 5.0
_breakers_lock = threading.Lock()


def breaker(service: str, settings: Settings | None = None) -> pybreaker.CircuitBreaker:
    """The breaker of ``service`` in this deployment (one per settings; shared through Redis)."""
    if service not in SERVICES:
        raise ValueError(f"unknown outside service {service!r}")
    settings = settings or get_settings()
    key = (service, getattr(settings, SERVICES[service]), settings.breaker_fail_max,
           settings.breaker_reset_seconds, settings.redis_url, settings.queue_prefix)
    with _breakers_lock:
        found = _breakers.get(key)
        if found is not None:
            return found
        from ubi.integrations.dependencies import redis_client

        client = redis_client(settings)
        if client is None:  # the embedded default: per process
            found = _breakers[key] = _new_breaker(service, settings, None)
            return found
        if time.monotonic() >= _redis_retry_at.get(key, 0.0):
            try:
                storage = _RedisStorage(
                    pybreaker.STATE_CLOSED, client,
                    namespace=settings.queue_name(f"ubi:breaker:{service}"))
            except redis.RedisError as exc:
                # Redis is down: this process counts failures on its own until Redis is
                # back (looked for again after a pause, not on every call). The breaker only
                # spares the service; nothing depends on Redis for correctness here.
                _redis_retry_at[key] = time.monotonic() + REDIS_RETRY_SECONDS
                log.warning("%s circuit breaker state not shared (Redis: %s)", service,
                            type(exc).__name__)
            else:
                found = _breakers[key] = _new_breaker(service, settings, storage)
                _local_breakers.pop(key, None)
                return found
        local = _local_breakers.get(key)
        if local is None:
            local = _local_breakers[key] = _new_breaker(service, settings, None)
        return local


class _RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with the opening time rounded up to the second it stores.

    Floored, as pybreaker stores it, a breaker opened at 12.98 s half-opened at 13.0 s with a
    one-second reset interval: a probe 20 ms after opening instead of a pause."""

    @property
    def opened_at(self) -> datetime | None:
        return _STORED_OPENED_AT.__get__(self)

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        if now.microsecond:
            now = now.replace(microsecond=0) + timedelta(seconds=1)
        _STORED_OPENED_AT.__set__(self, now)


_STORED_OPENED_AT: Any = vars(pybreaker.CircuitRedisStorage)["opened_at"]


def _new_breaker(service: str, settings: Settings,
                 storage: pybreaker.CircuitBreakerStorage | None) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds,
        listeners=[_GaugeListener(service)], state_storage=storage, name=service)


def breaker_state(service: str, settings: Settings | None = None) -> str:
    """``closed``, ``half-open`` or ``open`` (and the gauge set to it)."""
    state = breaker(service, settings).current_state
    CIRCUIT_BREAKER_STATE.labels(service=service).set(STATE_VALUES.get(state, 0))
    return state


def reset_breakers() -> None:
    """Forget every breaker of this process (tests; the Redis state is the caller's)."""
    with _breakers_lock:
        _breakers.clear()
        _local_breakers.clear()
        _redis_retry_at.clear()


def _request(http: requests.Session, method: str, url: str, timeout: float,
             kwargs: dict[str, Any]) -> requests.Response:
    try:
        response = http.request(method, url, timeout=(timeout, timeout),
                                allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise Unavailable(Failure(f"timeout after {timeout:g} s")) from exc
    except requests.RequestException as exc:
        raise Unavailable(Failure(f"unreachable: {type(exc).__name__}")) from exc
    if response.status_code >= 500:
        raise Unavailable(Failure(
            f"HTTP {response.status_code}: {response.text.strip()[:500]}".rstrip(": "),
            response.status_code, retry_after_seconds(response.headers.get("Retry-After"))))
    return response


def call(service: str, http: requests.Session, method: str, url: str, *,
         settings: Settings | None = None, **kwargs: Any) -> requests.Response:
    """One HTTP call to ``service`` through its breaker. Returns any answer below 500; raises
    :class:`Unavailable` for a 5xx, a timeout, a connection error or an open breaker."""
    settings = settings or get_settings()
    try:
        return breaker(service, settings).call(_request, http, method, url,
                                               settings.http_timeout, kwargs)
    except pybreaker.CircuitBreakerError as exc:
        # Raised while open, and by the failing call that trips it (then its context).
        cause = exc.__context__
        if isinstance(cause, Unavailable):
            failed = cause.failure
            raise Unavailable(Failure(f"{failed.reason}; circuit breaker opened",
                                      failed.status_code, failed.retry_after,
                                      opened=True)) from exc
        raise Unavailable(Failure("circuit breaker open",
                                  retry_after=float(settings.breaker_reset_seconds),
                                  attempted=False)) from exc
