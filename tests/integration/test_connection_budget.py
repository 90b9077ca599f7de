"""Each process group checks its share of PostgreSQL's connections when it starts."""

from __future__ import annotations

import logging

import pytest

from ubi.store.connections import check_budget


def test_a_group_that_fits_is_logged_and_one_that_does_not_is_a_warning(
        database, settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ubi.connections")
    fits = check_budget("web", 2, settings)
    assert fits is not None and fits.fits
    assert fits.per_process == settings.db_pool_size + settings.db_max_overflow
    assert fits.max_connections >= 1 and fits.in_use >= 0
    assert [r.levelname for r in caplog.records] == ["INFO"]

    caplog.clear()
    too_many = check_budget("worker ingest", fits.max_connections, settings)
    assert too_many is not None and not too_many.fits
    [record] = caplog.records
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert message.startswith("connection budget exceeded: worker ingest: "
                              f"{fits.max_connections} processes x {fits.per_process}")
    assert f"PostgreSQL allows {fits.max_connections}" in message and "PgBouncer" in message


def test_the_embedded_store_has_no_budget(tmp_path) -> None:
    from ubi.settings import load_settings

    embedded = load_settings({"UBI_DATA_DIR": str(tmp_path)})
    assert check_budget("web", 2, embedded) is None
