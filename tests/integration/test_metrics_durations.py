"""The duration histograms of SPEC §11 name what they measure: a feature of the taxonomy
(``ubi_feature_computation_duration_seconds{feature_name}``) and an actor scope
(``ubi_baseline_recompute_duration_seconds{actor_scope}``), one sample per run each, from
the features step, the full recompute, the nightly baselines and detection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from tests.support.organisation import organisation_events
from ubi.analytics.privacy import Pseudonymiser
from ubi.analytics.taxonomy import ACTOR_SCOPES, FEATURE_NAMES
from ubi.models import session_factory
from ubi.services import baselines, detection, features, ingest

#: A Wednesday noon; the organisation's traffic ends this morning.
NOW = datetime(2026, 6, 17, 12, tzinfo=UTC)
TENANT = "timed"


def _counts(family: str, label: str, values: tuple[str, ...]) -> dict[str, float]:
    return {v: REGISTRY.get_sample_value(f"{family}_count", {"tenant_id": TENANT, label: v})
            or 0.0 for v in values}


def _sums(family: str, label: str, values: tuple[str, ...]) -> float:
    return sum(REGISTRY.get_sample_value(f"{family}_sum", {"tenant_id": TENANT, label: v})
               or 0.0 for v in values)


def test_each_run_observes_every_feature_and_every_actor_scope(
        settings, clean_db, shared_clock) -> None:
    shared_clock.now = NOW
    events = organisation_events(TENANT, end_day=NOW.date(), until=NOW, days=10, actors=6,
                                 seed=5)
    with session_factory()() as s:
        ingest.store_batch(s, batch_id="b1", tenant_id=TENANT, events_json=json.dumps(events),
                           received_at=NOW, correlation_id="b1",
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()
    feature = "ubi_feature_computation_duration_seconds"
    baseline = "ubi_baseline_recompute_duration_seconds"
    before = _counts(feature, "feature_name", FEATURE_NAMES)
    before_sum = _sums(feature, "feature_name", FEATURE_NAMES)
    with session_factory()() as s:
        assert features.compute_tenant_features(s, TENANT).rows > 0
        s.commit()
    after_step = _counts(feature, "feature_name", FEATURE_NAMES)
    assert {n: after_step[n] - before[n] for n in FEATURE_NAMES} == dict.fromkeys(
        FEATURE_NAMES, 1.0)
    assert _sums(feature, "feature_name", FEATURE_NAMES) > before_sum
    with session_factory()() as s:
        assert features.recompute_features(s, TENANT, everything=True).rows > 0
        s.commit()
    after_recompute = _counts(feature, "feature_name", FEATURE_NAMES)
    assert {n: after_recompute[n] - after_step[n] for n in FEATURE_NAMES} == dict.fromkeys(
        FEATURE_NAMES, 1.0)
    # No sample under anything but a feature name (the old "*:24h" labels).
    names = {s.labels["feature_name"] for m in REGISTRY.collect() if m.name == feature
             for s in m.samples if s.labels.get("tenant_id") == TENANT}
    assert names == set(FEATURE_NAMES)

    before_scopes = _counts(baseline, "actor_scope", ACTOR_SCOPES)
    with session_factory()() as s:
        assert baselines.recompute_baselines(s, TENANT, now=NOW).baselines > 0
        s.commit()
    nightly = _counts(baseline, "actor_scope", ACTOR_SCOPES)
    assert {k: nightly[k] - before_scopes[k] for k in ACTOR_SCOPES} == dict.fromkeys(
        ACTOR_SCOPES, 1.0)
    with session_factory()() as s:
        detection.detect_tenant(s, TENANT, now=NOW, through=NOW.date() - timedelta(days=1))
        s.commit()
    detected = _counts(baseline, "actor_scope", ACTOR_SCOPES)
    assert all(detected[k] > nightly[k] for k in ACTOR_SCOPES), (nightly, detected)
    scopes = {s.labels["actor_scope"] for m in REGISTRY.collect() if m.name == baseline
              for s in m.samples if s.labels.get("tenant_id") == TENANT}
    assert scopes == set(ACTOR_SCOPES)
