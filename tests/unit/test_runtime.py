"""Garbage-collector tuning of service processes (``ubi/runtime.py``, ``UBI_GC_THRESHOLD``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ubi.runtime import tune_gc
from ubi.settings import SettingsError, load_settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_threshold_comes_from_the_environment(restored_gc, tmp_path) -> None:
    env = {"UBI_DATA_DIR": str(tmp_path)}
    assert tune_gc(load_settings(env)) == (100_000, 20, 20)
    assert gc.get_freeze_count() > 0  # what the process held at start-up is left alone
    assert tune_gc(load_settings({**env, "UBI_GC_THRESHOLD": "5000"}))[0] == 5000
    assert tune_gc(load_settings({**env, "UBI_GC_THRESHOLD": "0"})) == (700, 10, 10)
    with pytest.raises(SettingsError, match="UBI_GC_THRESHOLD"):
        load_settings({**env, "UBI_GC_THRESHOLD": "-1"})
