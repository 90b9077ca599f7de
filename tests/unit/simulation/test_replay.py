"""The pure replay path: envelopes -> the analytics, as the pipeline runs them."""

from __future__ import annotations

import copy
import re

import pytest

from tests.unit.simulation.sizes import SMALL
from ubi.simulation.generator import generate
from ubi.simulation.replay import (
    analyse_envelopes,
    envelopes_json,
    prepare_events,
    replay_envelopes,
)


@pytest.fixture(scope="module")
def small():
    return generate(11, **SMALL)


def test_actor_ids_are_pseudonyms_and_the_map_reads_them_back(small):
    foreign = copy.deepcopy(small.envelopes[:5])
    for e in foreign:
        e["tenant_id"] = "someone-else"
        e["signal_id"] += "-x"
    metric = dict(copy.deepcopy(small.envelopes[0]), signal_kind="metric",
                  signal_id="metric-1")
    prepared = prepare_events([*small.envelopes, *foreign, metric],
                              tenant_id=small.tenant_id)
    assert prepared.dropped == {"other_tenant": 5, "unsupported_signal_kind": 1}
    assert len(prepared.events) == len(small.envelopes)
    raw = {a.actor_id for a in small.truth.actors}
    assert set(prepared.actor_of.values()) == raw
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in prepared.actor_of)
    assert not raw & {e.actor_id for e in prepared.events}
    # counterparts are pseudonymised with the same key
    collab = [e for e in prepared.events if e.counterpart_id]
    assert collab and all(e.counterpart_id in prepared.actor_of for e in collab)


def test_envelopes_can_be_dicts_lines_or_one_array(small):
    dicts = small.envelopes[:50]
    as_lines = [envelopes_json([d])[1:-1] for d in dicts]
    assert envelopes_json(dicts) == envelopes_json(as_lines) == envelopes_json(
        [line.decode() for line in as_lines])
    assert envelopes_json(envelopes_json(dicts)) == envelopes_json(dicts)


def test_a_chunked_replay_equals_one_backfill(small):
    """With chunks that load the whole history (it is shorter than history_days), continuing
    chunk after chunk from the previous state gives exactly the signals of one backfill."""
    analysis, actor_of = analyse_envelopes(small.envelopes, tenant_id=small.tenant_id)
    replay = replay_envelopes(small.envelopes, tenant_id=small.tenant_id, chunk_days=10)
    assert len(replay.chunks) == 5  # 42 days in chunks of 10

    def key(changes):
        return sorted((c.kind, c.signal.signal_id, c.signal.version, c.signal.severity,
                       c.signal.first_day, c.signal.reason, c.signal.updated_at)
                      for c in changes)

    assert analysis.signals.changes
    assert key(replay.changes) == key(analysis.signals.changes)
    assert set(replay.active) == set(analysis.signals.active)
    assert replay.actor_of == actor_of
