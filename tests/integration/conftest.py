"""Fixtures for tests that need a running ingest worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.workers import running_worker


@pytest.fixture(scope="module")
def ingest_worker(database, broker) -> Iterator[object]:
    with running_worker("ingest") as worker:
        yield worker
