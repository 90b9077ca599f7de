"""The ERIS client (SPEC §13): ``POST {UBI_ERIS_URL}/v1/evidence/receipts`` behind a circuit
breaker, each answer mapped to one delivery outcome.

Outcomes: ``delivered`` (200/201), ``duplicate`` (409: ERIS has the receipt, so it counts as
delivered), ``retry`` (5xx, 408, 429 with its ``Retry-After``, a timeout, a connection error,
or the breaker open) and ``permanent`` (any other 4xx, with ERIS's reason).

The breaker (pybreaker) counts 5xx, timeouts and connection errors; after
``UBI_BREAKER_FAIL_MAX`` in a row it opens, and calls fail at once without touching ERIS until
``UBI_BREAKER_RESET_SECONDS`` have passed; then a single probe call decides (half-open). A 4xx
or a 429 is an answer, not a failure: it does not count. With ``REDIS_URL`` the breaker's state
lives in Redis, so every worker process (and ``GET /ready``) shares one breaker; on the
embedded default it is per process. pybreaker measures the open interval on the system clock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import pybreaker
import requests

from ubi.observability.metrics import CIRCUIT_BREAKER_STATE
from ubi.settings import Settings, get_settings

log = logging.getLogger("ubi.eris")

SERVICE = "eris"
RECEIPTS_PATH = "/v1/evidence/receipts"
#: Gauge values of ``ubi_circuit_breaker_state``.
STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1,
                pybreaker.STATE_OPEN: 2}
#: A Retry-After beyond this is read as this (a misbehaving server cannot park a receipt for
#: longer than a normal backoff step would).
MAX_RETRY_AFTER_SECONDS = 3600.0

OutcomeKind = Literal["delivered", "duplicate", "retry", "permanent"]


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to; ``retry_after`` in seconds when ERIS asked."""

    kind: OutcomeKind
    reason: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    #: False when no call was made (the breaker is open): not an attempt of the receipt's, so
    #: it does not lengthen its backoff; it is due again when the breaker may let a probe by.
    attempted: bool = True

    @property
    def delivered(self) -> bool:
        return self.kind in ("delivered", "duplicate")


class _Unavailable(Exception):
    """ERIS failed in a way the breaker counts (5xx, timeout, connection error)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


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


def outcome_of(status_code: int, body: str, retry_after: str | None = None) -> Outcome:
    """Map an HTTP answer of ERIS to an outcome (SPEC §13)."""
    reason = f"HTTP {status_code}: {body.strip()[:500]}".rstrip(": ")
    if status_code in (200, 201):
        return Outcome("delivered", status_code=status_code)
    if status_code == 409:
        return Outcome("duplicate", status_code=status_code)
    if status_code == 429:
        return Outcome("retry", reason, status_code, retry_after_seconds(retry_after))
    if status_code == 408 or status_code >= 500:
        return Outcome("retry", reason, status_code, retry_after_seconds(retry_after))
    if 400 <= status_code < 500:
        return Outcome("permanent", reason, status_code)
    # 1xx/3xx (a redirect is not followed for a POST): nothing stored; try again later.
    return Outcome("retry", reason, status_code)


class _GaugeListener(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any,
                     new_state: Any) -> None:
        name = getattr(new_state, "name", str(new_state))
        CIRCUIT_BREAKER_STATE.labels(service=SERVICE).set(STATE_VALUES.get(name, 0))
        log.warning("ERIS circuit breaker %s -> %s", getattr(old_state, "name", old_state),
                    name, extra={"ubi": {"service": SERVICE, "breaker": name}})


_breakers: dict[tuple[Any, ...], pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker(settings: Settings | None = None) -> pybreaker.CircuitBreaker:
    """The ERIS breaker of this deployment (one per settings; shared through Redis)."""
    settings = settings or get_settings()
    key = (settings.eris_url, settings.breaker_fail_max, settings.breaker_reset_seconds,
           settings.redis_url, settings.queue_prefix)
    with _breakers_lock:
        found = _breakers.get(key)
        if found is None:
            from ubi.integrations.dependencies import redis_client

            storage: pybreaker.CircuitBreakerStorage | None = None
            client = redis_client(settings)
            if client is not None:
                storage = pybreaker.CircuitRedisStorage(
                    pybreaker.STATE_CLOSED, client,
                    namespace=settings.queue_name(f"ubi:breaker:{SERVICE}"))
            found = _breakers[key] = pybreaker.CircuitBreaker(
                fail_max=settings.breaker_fail_max,
                reset_timeout=settings.breaker_reset_seconds,
                listeners=[_GaugeListener()], state_storage=storage, name=SERVICE)
        return found


def breaker_state(settings: Settings | None = None) -> str:
    """``closed``, ``half-open`` or ``open`` (and the gauge set to it)."""
    state = breaker(settings).current_state
    CIRCUIT_BREAKER_STATE.labels(service=SERVICE).set(STATE_VALUES.get(state, 0))
    return state


def reset_breakers() -> None:
    """Forget every breaker of this process (tests; the Redis state is the caller's)."""
    with _breakers_lock:
        _breakers.clear()


class ErisClient:
    """Submits signed receipts to ERIS. One instance per process is enough (it keeps a
    connection pool); it never raises for what ERIS or the network does."""

    def __init__(self, settings: Settings | None = None,
                 http: requests.Session | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.eris_url:
            raise ValueError("UBI_ERIS_URL is not set")
        self.url = self.settings.eris_url + RECEIPTS_PATH
        self.http = http or requests.Session()
        self.breaker = breaker(self.settings)

    def _post(self, receipt: dict[str, Any]) -> requests.Response:
        timeout = self.settings.http_timeout
        try:
            response = self.http.post(self.url, json=receipt, timeout=(timeout, timeout),
                                      allow_redirects=False)
        except requests.Timeout as exc:
            raise _Unavailable(Outcome("retry", f"timeout after {timeout:g} s")) from exc
        except requests.RequestException as exc:
            raise _Unavailable(Outcome("retry", f"unreachable: {type(exc).__name__}")) from exc
        if response.status_code >= 500:
            raise _Unavailable(outcome_of(response.status_code, response.text,
                                          response.headers.get("Retry-After")))
        return response

    def submit(self, receipt: dict[str, Any]) -> Outcome:
        """One delivery attempt of ``receipt``."""
        try:
            response = self.breaker.call(self._post, receipt)
        except pybreaker.CircuitBreakerError as exc:
            # Raised while open, and by the failing call that trips it (then its context).
            cause = exc.__context__
            if isinstance(cause, _Unavailable):
                failed = cause.outcome
                return Outcome("retry", f"{failed.reason}; circuit breaker opened",
                               failed.status_code, failed.retry_after)
            return Outcome("retry", "circuit breaker open",
                           retry_after=float(self.settings.breaker_reset_seconds),
                           attempted=False)
        except _Unavailable as exc:
            return exc.outcome
        return outcome_of(response.status_code, response.text,
                          response.headers.get("Retry-After"))
