"""The outside services' breakers work while Redis, where they share their state, is down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pybreaker
import pytest
import requests

from ubi.integrations import breakers
from ubi.settings import load_settings


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    breakers.reset_breakers()
    yield
    breakers.reset_breakers()


def test_with_redis_down_a_process_counts_failures_on_its_own_and_opens(
        tmp_path: Path) -> None:
    settings = load_settings({"UBI_DEV_MODE": "1", "UBI_DATA_DIR": str(tmp_path),
                              "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
                              "UBI_ERIS_URL": "http://127.0.0.1:1",
                              "UBI_BREAKER_FAIL_MAX": "2"}, require_secrets=False)
    first = breakers.breaker("eris", settings)
    assert breakers.breaker("eris", settings) is first  # kept while Redis stays down
    http = requests.Session()
    outcomes = []
    for _ in range(3):
        with pytest.raises(breakers.Unavailable) as caught:
            breakers.call("eris", http, "POST", "http://127.0.0.1:1/x", settings=settings)
        outcomes.append(caught.value.failure)
    assert [f.attempted for f in outcomes] == [True, True, False]  # opened after two
    assert outcomes[1].opened and outcomes[2].reason == "circuit breaker open"
    assert breakers.breaker_state("eris", settings) == "open"


def test_a_shared_breaker_stays_open_at_least_its_reset_interval(settings) -> None:
    # pybreaker stores the opening time in Redis in whole seconds; floored, a breaker opened at
    # 53.988 s with a one-second interval half-opened 12 ms later (a flaky CI run saw it).
    shared = settings.replace(eris_url="http://127.0.0.1:1", breaker_reset_seconds=1.0)
    storage = breakers.breaker("eris", shared)._state_storage
    assert isinstance(storage, pybreaker.CircuitRedisStorage)  # shared through Redis
    try:
        storage.opened_at = datetime(2026, 12, 7, 11, 17, 53, 988000, tzinfo=UTC)
        assert storage.opened_at == datetime(2026, 12, 7, 11, 17, 54, tzinfo=UTC)
        storage.opened_at = datetime(2026, 12, 7, 11, 17, 55, tzinfo=UTC)  # already whole
        assert storage.opened_at == datetime(2026, 12, 7, 11, 17, 55, tzinfo=UTC)
    finally:
        storage.reset_counter()
        storage._redis.delete(storage._namespace("opened_at"))
