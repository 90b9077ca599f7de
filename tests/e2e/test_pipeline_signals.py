"""IT-UBI-01: events through the API become features, baselines, anomalies and signals by
themselves (real workers on the ingest, features and detect queues)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.envelopes import post_events, wait_for_batch
from tests.support.organisation import organisation_events
from tests.support.waiting import wait_until
from tests.support.workers import running_worker
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import Baseline, FeatureDay, IngestionState, Score, Signal, SignalOutbox


@pytest.mark.slow
def test_after_hours_surge_raises_burnout_for_that_actor_only(
        client, tokens, db_session, settings, database, broker, shared_clock) -> None:
    # A Wednesday noon: yesterday's traffic and this morning's arrive, and this morning's
    # closes yesterday (by the data), so detection evaluates through yesterday.
    now = shared_clock.set(datetime(2026, 6, 17, 12, tzinfo=UTC), ticking=True)
    end_day = now.date() - timedelta(days=1)
    events = organisation_events("acme", end_day=now.date(), until=now, surge_actor="eng03")
    token = tokens("acme", "ubi:write:events")
    with running_worker("ingest", "features", "detect"):
        batch_ids = [post_events(client, token, events[i:i + 1000]).json["batch_id"]
                     for i in range(0, len(events), 1000)]
        for batch_id in batch_ids:
            assert wait_for_batch(client, token, batch_id)["status"] == "done"

        def evaluated() -> bool:
            db_session.rollback()
            state = db_session.get(IngestionState, "acme")
            return state is not None and state.last_evaluated_day == end_day
        assert wait_until(evaluated), "detection never evaluated the last closed day"

    alias = Pseudonymiser(settings.pseudonym_secret)
    surge = alias.pseudonym("acme", "eng03")
    signals = db_session.execute(sa.select(Signal).where(Signal.tenant_id == "acme")).scalars()
    actor_signals = [s for s in signals if s.actor_scope == "actor"]
    burnout = [s for s in actor_signals if s.signal_class == "burnout_risk"]
    assert [s.subject_id for s in burnout] == [surge]
    signal = burnout[0]
    assert signal.severity in ("WARN", "CRITICAL") and signal.status == "active"
    assert "after_hours_ratio" in signal.reason or "late_night_events" in signal.reason
    assert signal.evidence_refs["feature_ids"] and signal.evidence_refs.get("baseline_ids")
    assert signal.features_snapshot
    others = [s for s in actor_signals if s.subject_id != surge and s.signal_type == "risk"]
    assert others == [], [(s.subject_id[:8], s.signal_class, s.reason) for s in others]
    # The signal is on its way to the stream, with the routing key of SPEC §12.
    outbox = db_session.execute(sa.select(SignalOutbox).where(
        SignalOutbox.signal_id == signal.signal_id)).scalars().all()
    assert outbox
    assert outbox[0].routing_key == f"acme.actor.flow.risk.burnout_risk.{signal.severity}"
    # Features, baselines and scores were stored for every scope along the way.
    scopes = set(db_session.execute(sa.select(FeatureDay.actor_scope).distinct()).scalars())
    assert {"actor", "team", "tenant", "cohort"} <= scopes
    assert db_session.execute(sa.select(sa.func.count()).select_from(Baseline)).scalar() > 0
    assert db_session.execute(sa.select(sa.func.count()).select_from(Score)).scalar() > 0
