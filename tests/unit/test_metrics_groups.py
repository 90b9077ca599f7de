"""Multiprocess metrics by process group (``observability.multiproc``, ``metrics``): each
group's start takes its own directory, and the page merges every group's into one family each.
The processes themselves are in ``tests/e2e/test_metrics_processes.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from ubi.observability import multiproc
from ubi.observability.metrics import DECLARED, Backlog, apportion, exposition
from ubi.settings import get_settings


@pytest.fixture
def metrics_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``UBI_METRICS_DIR`` for this test; what the group starts export is undone after it."""
    root = tmp_path / "metrics"
    monkeypatch.setenv("UBI_METRICS_DIR", str(root))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unset-after-the-test")
    held = len(multiproc._held)
    get_settings.cache_clear()
    yield root
    while len(multiproc._held) > held:  # let go of the groups this test took
        os.close(multiproc._held.pop())
    get_settings.cache_clear()


def test_a_group_start_empties_its_directory_and_exports_it(metrics_root: Path) -> None:
    stale = metrics_root / "ingest" / "counter_4242.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a previous run")
    path = multiproc.prepare_group("ingest")
    assert path == metrics_root / "ingest" and list(path.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert os.environ["UBI_METRICS_DIR"] == str(metrics_root)
    assert get_settings().prometheus_multiproc_dir == str(path)


def test_a_second_copy_of_a_group_on_the_same_volume_takes_its_own_directory(
        metrics_root: Path) -> None:
    first = multiproc.prepare_group("ingest")
    (first / "counter_7.db").write_bytes(b"the first copy's")
    second = multiproc.prepare_group("ingest")  # the first holds its lock: it is alive
    assert (first.name, second.name) == ("ingest", "ingest.2")
    assert (first / "counter_7.db").exists()
    with pytest.raises(ValueError):
        multiproc.prepare_group("../web")


def _write(path: Path, name: str, labels: dict[str, str], value: float) -> None:
    db = MmapedDict(str(path))
    db.write_value(mmap_key(name, f"{name}_total", list(labels), list(labels.values()),
                            "Events by outcome"), value, 0.0)
    db.close()


def test_the_page_merges_every_group_and_describes_families_without_samples(
        metrics_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels = {"tenant_id": "acme", "event_type": "commit_created", "status": "stored"}
    for group, pid, value in (("web", 11, 2.0), ("ingest", 11, 3.0), ("ingest.2", 12, 4.0)):
        (metrics_root / group).mkdir(parents=True)
        _write(metrics_root / group / f"counter_{pid}.db", "ubi_events_processed", labels,
               value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_root / "web"))
    get_settings.cache_clear()
    body, _ = exposition(Backlog({"acme": 5}, {"task": (1, 2.5), "signal": (0, 0.0),
                                               "receipt": (0, 0.0)}))
    page = body.decode()
    families = {f.name: f for f in text_string_to_metric_families(page)}
    assert [s.value for s in families["ubi_events_processed"].samples] == [9.0]
    for metric in DECLARED:  # each once, samples or not
        for family in metric.describe():
            assert family.name in families
            assert page.count(f"# TYPE {family.name}") == 1, family.name
    assert {s.labels["outbox"]: s.value for s in families["ubi_outbox_oldest_age_seconds"]
            .samples} == {"task": 2.5, "signal": 0.0, "receipt": 0.0}
    # The store could not be read: the backlog families are still described.
    empty = {f.name: f for f in text_string_to_metric_families(exposition(None)[0].decode())}
    assert empty["ubi_queue_size"].samples == [] and empty["ubi_outbox_depth"].samples == []


def test_apportioned_durations_add_up_to_the_run() -> None:
    shares = apportion({"a": 1.0, "b": 3.0}, 8.0)
    assert shares == {"a": 2.0, "b": 6.0}
    assert apportion({"a": 0.0, "b": 0.0}, 2.0) == {"a": 1.0, "b": 1.0}
    assert apportion({"a": 2.0}, 1.0) == {"a": 2.0}  # a total shorter than measured adds none
    assert apportion({}, 1.0) == {}
