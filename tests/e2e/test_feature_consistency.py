"""Stored features equal a from-scratch computation over the stored events (SPEC §9,
"Arrival order"; ``ubi check features``) after a replay whose events arrive shuffled within
and across days, a day's events spread over many batches, interleaved with the features and
detect runs they trigger: on the embedded default (``ubi demo --real``) and through real
worker processes. The replayed history reaches back six weeks, so most of its days arrive
after ``late_event_days``: they are consistent after the full recompute (nightly)."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import SERVER_VARS
from tests.support.envelopes import post_events, wait_for_batch
from tests.support.servers import WorkerProcess
from tests.support.waiting import wait_until
from ubi.models import DirtySubject, FeatureRefresh, IngestionState, session_factory

#: The suite's Wednesday noon: the history ends yesterday.
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory) -> tuple[Path, list[dict[str, object]]]:
    from ubi.simulation.generator import generate

    workload = generate(11, actors=20, teams=3, agents=3, weeks=6, instances=1,
                        end_day=NOW.date() - timedelta(days=1), tenant_id="shuffled")
    envelopes = list(workload.envelopes)
    random.Random(4).shuffle(envelopes)
    path = tmp_path_factory.mktemp("replay") / "shuffled.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in envelopes)
    return path, envelopes


@pytest.mark.slow
def test_a_shuffled_replay_on_the_embedded_default_ends_consistent(shuffled, tmp_path) -> None:
    path, _ = shuffled
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env["UBI_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "ubi.cli", "demo", "--real", str(path), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads(result.stdout.strip().splitlines()[-1])["features_check"]
    assert check["consistent"], check
    assert check["compared"] > 10_000 and check["evaluated_through"] == str(
        NOW.date() - timedelta(days=1))


@pytest.mark.slow
def test_a_shuffled_replay_through_real_workers_ends_consistent(
        shuffled, client, tokens, clean_db, broker, shared_clock) -> None:
    from ubi.services.feature_check import check_features
    from ubi.tasks.baselines import recompute_tenant
    from ubi.tasks.detect import detect_tenant

    _, envelopes = shuffled
    shared_clock.set(NOW, ticking=True)
    token = tokens("shuffled", "ubi:write:events")
    workers = [WorkerProcess("ingest", pool="prefork", concurrency=2),
               WorkerProcess("pipeline", pool="prefork", concurrency=2),
               WorkerProcess("baselines")]
    try:
        ids = [post_events(client, token, envelopes[i:i + 500]).json["batch_id"]
               for i in range(0, len(envelopes), 500)]
        for batch_id in ids:
            assert wait_for_batch(client, token, batch_id, timeout=120)["status"] == "done"

        def settled() -> bool:
            with session_factory()() as s:
                return s.execute(sa.select(DirtySubject).limit(1)).first() is None
        assert wait_until(settled, timeout=180)
        # Counted before the first evaluation: it queues the full recompute that releases
        # these marks, which can finish before a count after it.
        with session_factory()() as s:
            late = s.execute(sa.select(sa.func.count()).select_from(FeatureRefresh).where(
                FeatureRefresh.kind == "all")).scalar_one()
        assert late > 0  # most of the history arrived after late_event_days
        yesterday = NOW.date() - timedelta(days=1)
        # The day close of beat for the last day, then the nightly full recompute.
        detect_tenant.apply_async(kwargs={"tenant_id": "shuffled",
                                          "through": yesterday.isoformat()})

        def evaluated() -> bool:
            with session_factory()() as s:
                state = s.get(IngestionState, "shuffled")
                return state is not None and state.last_evaluated_day == yesterday
        assert wait_until(evaluated, timeout=180)
        recompute_tenant.apply_async(kwargs={"tenant_id": "shuffled"})

        def recomputed() -> bool:
            with session_factory()() as s:
                return s.execute(sa.select(FeatureRefresh).limit(1)).first() is None
        assert wait_until(recomputed, timeout=180), workers[2].log_tail()
    finally:
        for worker in workers:
            worker.proc.terminate()
        for worker in workers:
            worker.stop()
    with session_factory()() as s:
        report = check_features(s, "shuffled")
    assert report.consistent, report.summary()
    assert report.compared > 10_000
