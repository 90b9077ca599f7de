"""The IAM client (SPEC §7): remote token verification by ``POST {UBI_IAM_URL}/iam/v1/verify``
``{"token": ...}`` → 200 ``{sub, scope[], valid_until}`` or 401, through the IAM circuit
breaker (``ubi/integrations/breakers.py``).

- IAM's answers are cached until their ``valid_until``, at most :data:`MAX_CACHE_SECONDS` ahead,
  on UBI's clock; in Redis when ``REDIS_URL`` is set (shared by every web process), else in
  this process. The cache key is a SHA-256 of the token, never the token. A cached answer
  serves until it expires, whatever IAM's state (so a token revoked at IAM stays accepted
  until then, at most 60 s).
- A 429 from IAM is honoured: no call to IAM until its ``Retry-After`` has passed (the
  until-time is shared through Redis too); cached answers still serve meanwhile.
- Access fails closed: IAM unreachable, failing, cut off by its open breaker or asking to wait,
  and no cached answer → :class:`IamUnavailable` (the API answers 503 naming IAM); a token IAM
  rejects → :class:`IamRejected` (401). Rejections are not cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis
import requests

from ubi import clock
from ubi.integrations import breakers
from ubi.integrations.breakers import retry_after_seconds
from ubi.settings import Settings, get_settings

log = logging.getLogger("ubi.integrations")

SERVICE = "iam"
VERIFY_PATH = "/iam/v1/verify"
#: An answer is never used for longer than this, whatever IAM's ``valid_until`` says (SPEC §7).
MAX_CACHE_SECONDS = 60.0
#: How long to hold off after a 429 without a usable ``Retry-After``.
DEFAULT_RETRY_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    """IAM's answer for a token it vouches for; ``valid_until`` on UBI's clock."""

    sub: str
    scope: tuple[str, ...]
    valid_until: datetime

    def to_json(self) -> str:
        return json.dumps({"sub": self.sub, "scope": list(self.scope),
                           "valid_until": self.valid_until.isoformat()})

    @classmethod
    def from_json(cls, text: str | bytes) -> Verdict:
        raw = json.loads(text)
        return cls(raw["sub"], tuple(raw["scope"]), datetime.fromisoformat(raw["valid_until"]))


class IamRejected(Exception):
    """IAM says the token is not valid (401)."""


class IamUnavailable(Exception):
    """IAM gave no usable answer (down, failing, breaker open, or a 429): fail closed.
    ``retry_after`` in seconds when known."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def token_key(token: str) -> str:
    """What identifies a token in the cache: its SHA-256 (the token itself is a secret)."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_valid_until(value: Any) -> datetime | None:
    """IAM's ``valid_until``: an ISO 8601 instant (UTC when it names no offset) or epoch
    seconds; None when absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str) and value:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return None


def cache_until(valid_until: datetime | None, now: datetime) -> datetime | None:
    """Until when an answer may serve: ``valid_until`` capped at ``MAX_CACHE_SECONDS`` from
    ``now``; None when it is not worth caching (no or a past ``valid_until``)."""
    if valid_until is None or valid_until <= now:
        return None
    return min(valid_until, now + timedelta(seconds=MAX_CACHE_SECONDS))


class VerdictCache(Protocol):
    """IAM's answers by token key, and the time before which IAM must not be called."""

    def get(self, key: str, now: datetime) -> Verdict | None: ...

    def put(self, key: str, verdict: Verdict, now: datetime) -> None: ...

    def hold_off_until(self, now: datetime) -> datetime | None: ...

    def hold_off(self, until: datetime, now: datetime) -> None: ...


class MemoryCache:
    """The cache of one process (the embedded default, without Redis)."""

    #: Expired entries are dropped when the cache grows past this many.
    PRUNE_AT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[str, Verdict] = {}
        self._hold_off: datetime | None = None

    def get(self, key: str, now: datetime) -> Verdict | None:
        with self._lock:
            found = self._verdicts.get(key)
            if found is not None and found.valid_until <= now:
                del self._verdicts[key]
                return None
            return found

    def put(self, key: str, verdict: Verdict, now: datetime) -> None:
        with self._lock:
            if len(self._verdicts) >= self.PRUNE_AT:
                self._verdicts = {k: v for k, v in self._verdicts.items()
                                  if v.valid_until > now}
            self._verdicts[key] = verdict

    def hold_off_until(self, now: datetime) -> datetime | None:
        with self._lock:
            return self._hold_off if self._hold_off and self._hold_off > now else None

    def hold_off(self, until: datetime, now: datetime) -> None:
        with self._lock:
            self._hold_off = max(until, self._hold_off or until)


class RedisCache:
    """The cache shared by every process of a deployment. Expiry is checked on UBI's clock
    (which tests move); Redis's own expiry, on real time, only removes what is over.

    A Redis error is a cache miss (or a lost write), never a refused request: IAM still
    decides, so access stays correct."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _expires_in(self, until: datetime, now: datetime) -> int:
        return max(1, math.ceil((until - now).total_seconds()) + 1)

    def get(self, key: str, now: datetime) -> Verdict | None:
        try:
            raw = self.client.get(self.prefix + "verify:" + key)
        except redis.RedisError as exc:
            log.warning("IAM answer cache not read: %s", type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            found = Verdict.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None
        return found if found.valid_until > now else None

    def put(self, key: str, verdict: Verdict, now: datetime) -> None:
        try:
            self.client.set(self.prefix + "verify:" + key, verdict.to_json(),
                            ex=self._expires_in(verdict.valid_until, now))
        except redis.RedisError as exc:
            log.warning("IAM answer cache not written: %s", type(exc).__name__)

    def hold_off_until(self, now: datetime) -> datetime | None:
        try:
            raw = self.client.get(self.prefix + "hold_off")
        except redis.RedisError as exc:
            log.warning("IAM hold-off not read: %s", type(exc).__name__)
            return None
        if raw is None:
            return None
        until = parse_valid_until(raw.decode() if isinstance(raw, bytes) else raw)
        return until if until is not None and until > now else None

    def hold_off(self, until: datetime, now: datetime) -> None:
        current = self.hold_off_until(now)
        if current is not None and current >= until:
            return
        try:
            self.client.set(self.prefix + "hold_off", until.isoformat(),
                            ex=self._expires_in(until, now))
        except redis.RedisError as exc:
            log.warning("IAM hold-off not written: %s", type(exc).__name__)


def cache_prefix(settings: Settings) -> str:
    """Where the Redis cache keeps its keys (namespaced like the breakers and rate limits)."""
    return settings.queue_name("ubi:iam:")


def cache_for(settings: Settings) -> VerdictCache:
    from ubi.integrations.dependencies import redis_client

    client = redis_client(settings)
    if client is None:
        return MemoryCache()
    return RedisCache(client, cache_prefix(settings))


class IamClient:
    """Verifies tokens at IAM. One instance per process and settings (it keeps a connection
    pool and, without Redis, the cache)."""

    def __init__(self, settings: Settings | None = None, http: requests.Session | None = None,
                 cache: VerdictCache | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.iam_url:
            raise ValueError("UBI_IAM_URL is not set")
        self.url = self.settings.iam_url + VERIFY_PATH
        self.http = http or requests.Session()
        self.cache = cache if cache is not None else cache_for(self.settings)

    def verify(self, token: str) -> Verdict:
        """IAM's answer for ``token``, cached or fresh; raises :class:`IamRejected` or
        :class:`IamUnavailable`."""
        key = token_key(token)
        now = clock.utcnow()
        cached = self.cache.get(key, now)
        if cached is not None:
            return cached
        waiting = self.cache.hold_off_until(now)
        if waiting is not None:
            raise IamUnavailable("IAM asked to wait (429)",
                                 (waiting - now).total_seconds())
        try:
            response = breakers.call(SERVICE, self.http, "POST", self.url,
                                     settings=self.settings, json={"token": token})
        except breakers.Unavailable as exc:
            raise IamUnavailable(exc.failure.reason, exc.failure.retry_after) from exc
        return self._answer(key, response)

    def _answer(self, key: str, response: requests.Response) -> Verdict:
        status = response.status_code
        if status == 401:
            raise IamRejected(_reason(response) or "token rejected by IAM")
        now = clock.utcnow()
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"),
                                       now_epoch=now.timestamp())
            wait = DEFAULT_RETRY_AFTER_SECONDS if wait is None else wait
            self.cache.hold_off(now + timedelta(seconds=wait), now)
            raise IamUnavailable("IAM asked to wait (429)", wait)
        if status != 200:
            # Any other answer is IAM (or UBI_IAM_URL) misbehaving, not the caller's fault.
            log.error("IAM answered HTTP %s to a verify call", status)
            raise IamUnavailable(f"unexpected HTTP {status}")
        try:
            body = response.json()
            sub, scope = body["sub"], body.get("scope") or []
            if not isinstance(sub, str) or not sub or not isinstance(scope, list):
                raise TypeError("sub or scope")
        except (ValueError, KeyError, TypeError) as exc:
            log.error("IAM answered an unreadable verify body: %s", exc)
            raise IamUnavailable("unreadable answer") from exc
        until = cache_until(parse_valid_until(body.get("valid_until")), now)
        verdict = Verdict(sub, tuple(s for s in scope if isinstance(s, str)),
                          until or now)
        if until is not None:
            self.cache.put(key, verdict, now)
        return verdict


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else ""
