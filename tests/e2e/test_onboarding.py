"""Onboarding with history (issue 23): a tenant that posts ten weeks of past events today gets
features, baselines and signals for them from the workers, without a nightly run and without
anyone calling detection; ``ubi recompute --from --to`` restates a range like a fresh run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.support.envelopes import post_events, wait_for_batch
from tests.support.organisation import organisation_events
from tests.support.waiting import wait_until
from tests.support.workers import running_worker
from ubi.analytics.privacy import Pseudonymiser
from ubi.cli import main
from ubi.models import (
    Baseline,
    FeatureDay,
    FeatureRefresh,
    IngestionState,
    Score,
    Signal,
    session_factory,
)
from ubi.services.feature_check import check_features
from ubi.store import features as feature_store

#: The suite's Wednesday noon: the history runs up to this morning, which closes yesterday.
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)
YESTERDAY = NOW.date() - timedelta(days=1)


def _evaluated_through(tenant: str) -> Any:
    with session_factory()() as s:
        state = s.get(IngestionState, tenant)
        return state.last_evaluated_day if state is not None else None


def _post_all(client: Any, token: str, batches: list[list[dict[str, Any]]]) -> None:
    ids = [post_events(client, token, batch).json["batch_id"] for batch in batches]
    for batch_id in ids:
        assert wait_for_batch(client, token, batch_id, timeout=60)["status"] == "done"


@pytest.mark.slow
def test_a_tenant_onboarded_with_ten_weeks_of_history_gets_its_signals(
        client, tokens, clean_db, settings, broker, shared_clock) -> None:
    from ubi.simulation.generator import generate

    shared_clock.set(NOW, ticking=True)
    tenant = "onboard"
    workload = generate(5, actors=20, teams=3, agents=3, weeks=10, instances=1,
                        end_day=NOW.date(), tenant_id=tenant)
    # This morning's events close yesterday (by the data); none is in the future.
    envelopes = [e for e in workload.envelopes
                 if datetime.fromisoformat(e["occurred_at"]) < NOW - timedelta(minutes=5)]
    batches = [envelopes[i:i + 1000] for i in range(0, len(envelopes), 1000)]
    # The client uploads its history newest first, faster than the workers store it (all of
    # it is accepted before they start); two worker threads store it in any order, and the
    # first batches stored close the last days long before the oldest ones are stored. (A
    # client slower than the workers, leaving moments with nothing in flight, can start the
    # first evaluation before its oldest days arrive: docs/operations.md says so.)
    batches.reverse()
    token = tokens(tenant, "ubi:write:events")
    ids = [post_events(client, token, batch).json["batch_id"] for batch in batches]
    with running_worker("ingest", "features", "detect", "baselines", "publish",
                        concurrency=2):
        for batch_id in ids:
            assert wait_for_batch(client, token, batch_id, timeout=60)["status"] == "done"
        assert wait_until(lambda: _evaluated_through(tenant) == YESTERDAY, timeout=60), \
            "detection never reached yesterday"

        def features_recomputed() -> bool:  # the history arrived after late_event_days
            with session_factory()() as s:
                return s.execute(sa.select(FeatureRefresh).where(
                    FeatureRefresh.tenant_id == tenant).limit(1)).first() is None
        assert wait_until(features_recomputed, timeout=60)

    with session_factory()() as s:
        state = s.get(IngestionState, tenant)
        assert state is not None
        # The whole history was evaluated, from its first day (history_days covers it).
        assert state.first_evaluated_day == workload.truth.start_day
        alias = Pseudonymiser(settings.pseudonym_secret)
        planted = {(alias.pseudonym(tenant, p.actor_id), p.signal_class): p
                   for p in workload.truth.plants}
        signals = s.execute(sa.select(Signal).where(Signal.tenant_id == tenant)).scalars().all()
        found = {(sig.subject_id, sig.signal_class) for sig in signals} & set(planted)
        assert len(found) >= len(planted) // 2, (sorted(planted), signals)
        earliest = min(planted[k].start_day for k in found)
        assert earliest < NOW.date() - timedelta(days=28)  # history, not only the last days
        assert s.execute(sa.select(sa.func.count()).select_from(Baseline).where(
            Baseline.tenant_id == tenant)).scalar_one() > 0
        first_feature = feature_store.first_day(s, tenant)
        assert first_feature == workload.truth.start_day
        report = check_features(s, tenant)
    assert report.consistent, report.summary()


def _snapshot(tenant: str) -> tuple[dict[str, float | None], dict[tuple[Any, ...], Any]]:
    with session_factory()() as s:
        feats = {r.feature_id: r.value for r in feature_store.records(s, tenant)}
        scores = {tuple(r[:5]): (r[5], r[6]) for r in s.execute(sa.select(
            Score.actor_scope, Score.subject_id, Score.dimension, Score.window, Score.day,
            Score.score, Score.previous_score).where(Score.tenant_id == tenant)).all()}
    return feats, scores


def _recompute(*args: str) -> dict[str, Any]:
    import json

    result = CliRunner().invoke(main, ["recompute", *args, "--wait", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    run_id, outcome = result.output.strip().splitlines()
    assert len(run_id) == 36
    parsed: dict[str, Any] = json.loads(outcome)
    assert parsed["run_id"] == run_id
    return parsed


@pytest.mark.slow
def test_recompute_of_a_range_restates_it_like_a_fresh_run(
        client, tokens, clean_db, broker, shared_clock) -> None:
    shared_clock.set(NOW, ticking=True)
    tenant = "replayed"
    events = organisation_events(tenant, end_day=NOW.date(), until=NOW)
    token = tokens(tenant, "ubi:write:events")
    with running_worker("ingest", "features", "detect", "baselines"):
        _post_all(client, token, [events[i:i + 1000] for i in range(0, len(events), 1000)])
        assert wait_until(lambda: _evaluated_through(tenant) == YESTERDAY, timeout=60)
        fresh = _recompute("--tenant", tenant)  # every stored day: the fresh run
        assert fresh["first_day"] == str(NOW.date() - timedelta(days=20))
        assert fresh["last_day"] == str(NOW.date()) and fresh["features"] > 0
        before = _snapshot(tenant)
        assert before[0] and before[1]

        # Damage a range: features gone or wrong, scores wrong.
        first, last = NOW.date() - timedelta(days=10), NOW.date() - timedelta(days=4)
        with session_factory()() as s:
            in_range = sa.and_(FeatureDay.tenant_id == tenant, FeatureDay.day >= first,
                               FeatureDay.day <= last)
            s.execute(sa.delete(FeatureDay).where(in_range, FeatureDay.actor_scope == "team"))
            wrong = feature_store.pack(0.5, [-1.0] * len(feature_store.SLOTS["28d"]))
            s.execute(sa.update(FeatureDay).where(in_range, FeatureDay.w28d.is_not(None)
                                                  ).values(w28d=wrong))
            s.execute(sa.update(Score).where(Score.tenant_id == tenant, Score.day >= first,
                                             Score.day <= last).values(score=0.0))
            s.commit()
        assert _snapshot(tenant) != before

        outcome = _recompute("--tenant", tenant, "--from", str(first), "--to", str(last))
    assert (outcome["first_day"], outcome["last_day"]) == (str(first), str(last))
    assert outcome["scores"] > 0 and outcome["baselines"] > 0
    assert outcome["evaluated_from"] is None  # every day of the range was evaluated: final
    after = _snapshot(tenant)
    assert after[0] == before[0]
    assert after[1] == before[1]
