"""Reachability of the three servers UBI depends on (``GET /ready``) and the Redis client.

Outside services (ERIS) never make UBI unready: with ``UBI_ERIS_URL`` set, ``/ready`` shows
its circuit breaker, and an open breaker marks the service ``degraded`` (receipts wait in the
outbox), still 200."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
import sqlalchemy as sa
from kombu import Connection

from ubi.models.session import get_engine
from ubi.settings import Settings, get_settings

_redis_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    #: Reachable enough to serve, but a part of the work waits (an outside service down).
    degraded: bool = False


def redis_client(settings: Settings | None = None) -> redis.Redis | None:
    """Shared Redis client, or None on the embedded default (no REDIS_URL)."""
    settings = settings or get_settings()
    if not settings.redis_url:
        return None
    with _redis_lock:
        client = _redis_clients.get(settings.redis_url)
        if client is None:
            client = _redis_clients[settings.redis_url] = redis.Redis.from_url(
                settings.redis_url, socket_timeout=2, socket_connect_timeout=2,
                health_check_interval=30)
        return client


def check_database(settings: Settings) -> Check:
    try:
        with get_engine(settings).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return Check("database", True, "postgresql" if settings.is_postgres else "sqlite")
    except Exception as exc:
        return Check("database", False, f"unreachable: {type(exc).__name__}")


def check_broker(settings: Settings) -> Check:
    if settings.embedded_broker:
        return Check("broker", True, "in-process (embedded)")
    try:
        with Connection(settings.broker_url,
                        connect_timeout=settings.broker_connect_timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.broker_connect_timeout)
        return Check("broker", True, "rabbitmq")
    except Exception as exc:
        return Check("broker", False, f"unreachable: {type(exc).__name__}")


def check_redis(settings: Settings) -> Check:
    client = redis_client(settings)
    if client is None:
        return Check("redis", True, "in-process (embedded)")
    try:
        client.ping()
        return Check("redis", True, "redis")
    except Exception as exc:
        return Check("redis", False, f"unreachable: {type(exc).__name__}")


#: What waits while a service's breaker is open (``/ready`` says so, degraded, not down).
_WAITING = {"eris": "receipts wait in the outbox",
            "iam": "tokens are verified from cached answers only",
            "governance": "retention applies the last known answers"}


def check_breaker(service: str, settings: Settings) -> Check:
    from ubi.integrations.breakers import breaker_state

    try:
        state = breaker_state(service, settings)
    except Exception as exc:  # its state lives in Redis; the redis check names that outage
        return Check(service, True, f"circuit breaker state unknown: {type(exc).__name__}")
    if state == "open":
        return Check(service, True, f"circuit breaker open: {_WAITING[service]}",
                     degraded=True)
    return Check(service, True, f"circuit breaker {state}")


def readiness(settings: Settings | None = None) -> list[Check]:
    settings = settings or get_settings()
    checks = [check_database(settings), check_broker(settings), check_redis(settings)]
    from ubi.integrations.breakers import SERVICES

    checks += [check_breaker(service, settings) for service, url in SERVICES.items()
               if getattr(settings, url)]
    return checks
