"""The newcomer's first command: ``ubi demo`` on the embedded default, in a clean environment
(no servers configured), runs to completion and meets its quality targets (issue 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SERVER_VARS = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL",
               "UBI_QUEUE_PREFIX", "UBI_PSEUDONYM_SECRET", "UBI_RECEIPT_SIGNING_KEY",
               "UBI_JWT_SECRET", "UBI_JWT_ISSUER", "UBI_JWT_AUDIENCE",
               "PROMETHEUS_MULTIPROC_DIR")


@pytest.mark.slow
def test_demo_on_the_embedded_default_meets_its_targets(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env["UBI_DATA_DIR"] = str(tmp_path / "data")
    report = tmp_path / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "ubi.cli", "demo", "--json", "--seed", "7",
         "--html", str(report)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(result.stdout.strip().splitlines()[-1])
    # Enough to run the same organisation again, and each target's verdict.
    assert (card["seed"], card["actors"], card["weeks"]) == (7, 60, 8)
    assert set(card["targets"]) == {"recall_of_each_planted_class",
                                    "precision_of_each_risk_class", "median_days_to_detect",
                                    "signals_per_clean_actor_week", "warmup_signals"}
    # Issue 18's precision and days-to-detect targets are reported with their values; they
    # do not all hold yet (docs/analytics.md), the others do.
    for name in ("recall_of_each_planted_class", "signals_per_clean_actor_week",
                 "warmup_signals"):
        assert card["targets"][name]["met"], (name, card["targets"][name])
    assert card["targets_met"] is all(t["met"] for t in card["targets"].values())
    precision = card["targets"]["precision_of_each_risk_class"]["classes"]
    assert set(precision) == {"burnout_risk", "context_thrash", "engagement_drop",
                              "guardrail_overrides", "rework_loop"}
    assert all(p["value"] == card["classes"][c]["precision"] for c, p in precision.items())
    assert card["targets"]["median_days_to_detect"]["value"] > 0
    assert set(card["targets"]["recall_of_each_planted_class"]["classes"]) == {
        cls for cls, score in card["classes"].items() if score["planted"]}
    for cls, score in card["classes"].items():
        if score["planted"]:
            assert score["recall"] >= 0.9, (cls, score)
    assert card["signals_on_clean_actor_weeks"] * 20 <= card["clean_actor_weeks"], card
    assert card["warmup_signals"] == 0
    assert card["features_check"]["consistent"], card["features_check"]
    # It ran on its own SQLite file under the data dir, not on any server.
    assert (tmp_path / "data" / "demo" / "demo.sqlite3").exists()
    page = report.read_text()
    assert "<svg" in page and "Team " in page
