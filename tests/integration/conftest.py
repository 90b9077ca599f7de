"""Fixtures for tests that need a running ingest worker or the ERIS stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import web_thread
from tests.support.workers import running_worker
from ubi.devservers.eris import ErisStandIn
from ubi.integrations import breakers
from ubi.integrations.dependencies import redis_client

#: An open ERIS breaker lets a probe by after this long in the stand-in tests.
ERIS_RESET_SECONDS = 2.0


@pytest.fixture(scope="module")
def ingest_worker(database, broker) -> Iterator[object]:
    with running_worker("ingest") as worker:
        yield worker


@pytest.fixture
def ubi_url(app) -> Iterator[str]:
    """UBI's API over real HTTP (the stand-in reads the key set from it)."""
    with web_thread(app) as base:
        yield base


@pytest.fixture
def eris(ubi_url) -> Iterator[ErisStandIn]:
    with ErisStandIn(keys_url=f"{ubi_url}/receipts/public-key") as server:
        yield server


def _forget_breaker(settings: Any) -> None:
    breakers.reset_breakers()
    client = redis_client(settings)
    assert client is not None
    for key in client.scan_iter(settings.queue_name("ubi:breaker:eris") + "*"):
        client.delete(key)


@pytest.fixture
def eris_settings(settings, eris, clean_db) -> Iterator[Any]:
    configured = settings.replace(eris_url=eris.url, breaker_fail_max=3,
                                  breaker_reset_seconds=ERIS_RESET_SECONDS, http_timeout=1.0)
    _forget_breaker(configured)
    yield configured
    _forget_breaker(configured)
