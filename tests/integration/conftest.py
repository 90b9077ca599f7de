"""Fixtures for tests that need a running ingest worker or an outside service's stand-in, or
one session on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.conftest import CLOCK_FILE
from tests.support import resources
from tests.support.organisation import NOW, acme_like
from tests.support.pipeline import run_pipeline
from tests.support.servers import web_thread
from tests.support.workers import running_worker
from ubi import clock
from ubi.devservers.eris import ErisStandIn
from ubi.integrations import breakers
from ubi.integrations.dependencies import redis_client
from ubi.models.session import create_db_engine
from ubi.services import schema
from ubi.settings import Settings


@pytest.fixture(params=["postgresql", "sqlite"])
def backend_session(request: pytest.FixtureRequest, settings: Settings,
                    tmp_path: Path) -> Iterator[Session]:
    """A session on the run's PostgreSQL database (emptied after the test), then on a migrated
    SQLite file (the embedded default): the same test on both backends."""
    if request.param == "postgresql":
        yield request.getfixturevalue("db_session")
        return
    url = f"sqlite:///{tmp_path / 'ubi.sqlite3'}"
    schema.upgrade(settings.replace(database_url=url))
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


#: An open ERIS breaker lets a probe by after this long in the stand-in tests.
ERIS_RESET_SECONDS = 2.0


@pytest.fixture(scope="module")
def ingest_worker(database, broker) -> Iterator[object]:
    with running_worker("ingest") as worker:
        yield worker


@pytest.fixture(scope="module")
def acme(database, settings) -> Iterator[str]:
    """Tenant ``acme`` (16 actors, a surge on eng03, a team of four) through the pipeline up
    to Wednesday ``NOW``; the module's tests read and change it, the next module gets anew."""
    # (A module fixture runs before the per-test clock is set: it sets its own.)
    clock.set_shared_clock(CLOCK_FILE, NOW, ticking=False)
    run_pipeline(settings, "acme", acme_like("acme", end_day=NOW.date(), until=NOW))
    yield "acme"
    resources.truncate_all(database)


@pytest.fixture
def ubi_url(app) -> Iterator[str]:
    """UBI's API over real HTTP (the stand-in reads the key set from it)."""
    with web_thread(app) as base:
        yield base


@pytest.fixture
def eris(ubi_url) -> Iterator[ErisStandIn]:
    with ErisStandIn(keys_url=f"{ubi_url}/receipts/public-key") as server:
        yield server


def forget_breaker(settings: Any, service: str, *patterns: str) -> None:
    """No breaker state of ``service``, nor Redis keys under ``patterns``, left behind."""
    breakers.reset_breakers()
    client = redis_client(settings)
    assert client is not None
    for pattern in (settings.queue_name(f"ubi:breaker:{service}"), *patterns):
        for key in client.scan_iter(pattern + "*"):
            client.delete(key)


@contextmanager
def standin_settings(settings: Any, service: str, url: str, *, reset_seconds: float,
                     forget: tuple[str, ...] = ()) -> Iterator[Any]:
    """Settings pointing ``service`` at a stand-in, with a fast breaker (three failures open
    it) and nothing of another test's breaker, or Redis keys under ``forget``, around it."""
    configured = settings.replace(**{breakers.SERVICES[service]: url}, breaker_fail_max=3,
                                  breaker_reset_seconds=reset_seconds, http_timeout=1.0)
    forget_breaker(configured, service, *forget)
    yield configured
    forget_breaker(configured, service, *forget)


@pytest.fixture
def eris_settings(settings, eris, clean_db) -> Iterator[Any]:
    with standin_settings(settings, "eris", eris.url,
                          reset_seconds=ERIS_RESET_SECONDS) as configured:
        yield configured
