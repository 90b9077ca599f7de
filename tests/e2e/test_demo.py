"""The newcomer's first command: ``ubi demo`` on the embedded default, in a clean environment
(no servers configured), runs to completion and meets its quality targets (issue 6)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ServedDemo


@pytest.mark.slow
@pytest.mark.timeout(900)  # the shared demo runs in this test's set-up
def test_demo_on_the_embedded_default_meets_its_targets(served_demo: ServedDemo) -> None:
    card = served_demo.card
    # Enough to run the same organisation again, and each target's verdict.
    assert (card["seed"], card["actors"], card["weeks"]) == (7, 60, 8)
    assert set(card["targets"]) == {"recall_of_each_planted_class",
                                    "precision_of_each_risk_class", "median_days_to_detect",
                                    "signals_per_clean_actor_week", "warmup_signals"}
    # Issue 18's precision and days-to-detect targets are reported with their values; they
    # do not all hold yet (docs/detection-quality.md), the others do.
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
    assert served_demo.database.exists()
    page = served_demo.report.read_text()
    assert "<svg" in page and "Team " in page
