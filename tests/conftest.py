"""Test suite wiring: every run gets its own PostgreSQL database and broker name prefix, and
one shared clock.

The real servers run on localhost (override with UBI_TEST_PG_ADMIN_URL, UBI_TEST_BROKER_URL,
UBI_TEST_REDIS_URL). The environment is set before any ``ubi`` module is imported, so the
settings, the Celery config and the engines all point at this run's resources; everything is
dropped at the end of the session.

Time: every test starts at ``SUITE_NOW`` on the shared clock (``UBI_CLOCK_FILE``, read by the
test process and every process it starts), ticking on from there; a test that needs another
instant moves the clock with the ``shared_clock`` fixture. Nothing in the suite depends on the
day it runs.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG_ADMIN_URL = os.environ.get("UBI_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("UBI_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("UBI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_NAME = f"ubi_test_{RUN_ID}"
QUEUE_PREFIX = f"t{RUN_ID}."
DATA_DIR = Path(tempfile.mkdtemp(prefix=f"ubi-test-{RUN_ID}-"))
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLOCK_FILE = DATA_DIR / "clock.json"
#: Where every test's clock starts: a Wednesday noon (UTC), so that today and yesterday are
#: workdays and the weekday-only organisations of ``tests/support`` have traffic on both.
SUITE_NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)


def _test_env() -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signing = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return {
        "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}",
        "CELERY_BROKER_URL": BROKER_URL,
        "REDIS_URL": REDIS_URL,
        "UBI_QUEUE_PREFIX": QUEUE_PREFIX,
        "UBI_DATA_DIR": str(DATA_DIR),
        "UBI_PSEUDONYM_SECRET": "test-pseudonym-secret-" + RUN_ID,
        "UBI_RECEIPT_SIGNING_KEY": signing,
        "UBI_JWT_SECRET": "test-jwt-secret-" + RUN_ID + "-0123456789abcdef",
        "UBI_JWT_AUDIENCE": "ubi",
        "UBI_JWT_ISSUER": "ubi-test",
        "UBI_LOG_FORMAT": "text",
        "UBI_LOG_LEVEL": "WARNING",
        "UBI_BROKER_CONNECT_TIMEOUT": "2",
        "UBI_DEV_MODE": "1",  # for the shared clock only: every secret is given above
        "UBI_CLOCK_FILE": str(CLOCK_FILE),
    }


def pytest_configure(config: pytest.Config) -> None:
    from tests.support import slow_tests

    slow_tests.register(config)  # names each `slow` test on the terminal as it starts
    for name in ("UBI_IAM_URL", "UBI_ERIS_URL", "UBI_GOVERNANCE_URL", "UBI_JWT_PUBLIC_KEY",
                 "UBI_JWT_JWKS_FILE", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR",
                 "UBI_METRICS_DIR"):
        os.environ.pop(name, None)
    os.environ.update(_test_env())


@pytest.fixture(autouse=True)
def shared_clock():
    """The run's shared clock, set to ``SUITE_NOW`` (ticking) for every test."""
    from tests.support.clock import TestClock

    test_clock = TestClock(CLOCK_FILE)
    test_clock.set(SUITE_NOW, ticking=True)
    return test_clock


@pytest.fixture(scope="session")
def settings():
    from ubi.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def database(settings) -> Iterator[str]:
    """This run's database, migrated to head; dropped at the end of the session."""
    from tests.support import resources
    from ubi.services import schema

    resources.create_database(PG_ADMIN_URL, DB_NAME)
    try:
        schema.upgrade(settings)
        yield settings.database_url
    finally:
        from ubi.models.session import reset_engines

        reset_engines()
        resources.drop_database(PG_ADMIN_URL, DB_NAME)


@pytest.fixture(scope="session")
def broker(settings, database) -> Iterator[str]:
    """This run's exchanges and queues (the stream's subscriptions are the database's),
    declared; deleted at the end of the session."""
    from tests.support import resources
    from ubi.integrations.broker import declare_topology

    declared = declare_topology(settings=settings)
    try:
        yield settings.broker_url
    finally:
        resources.delete_broker_objects(settings.broker_url, declared)


@pytest.fixture
def db_session(database):
    """A session on this run's database; every table is emptied after the test."""
    from tests.support import resources
    from ubi.models import session_factory

    session = session_factory()()
    try:
        yield session
    finally:
        session.close()
        resources.truncate_all(database)
        resources.purge_task_queues(BROKER_URL)


@pytest.fixture
def clean_db(database) -> Iterator[str]:
    from tests.support import resources

    yield database
    resources.truncate_all(database)
    resources.purge_task_queues(BROKER_URL)


@pytest.fixture
def app(database, settings):
    from ubi.web.app import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(settings):
    """Mint tokens: ``tokens(tenant, *roles, **claims)``."""
    from ubi.web.auth import mint_token

    def make(tenant_id: str | None, *roles: str, sub: str = "tester", **kw: object) -> str:
        return mint_token(sub=sub, tenant_id=tenant_id, roles=roles, settings=settings,
                          **kw)  # type: ignore[arg-type]

    return make
