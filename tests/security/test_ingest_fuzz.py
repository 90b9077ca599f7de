"""Bad input never yields a 500: fuzzed envelope fields and raw bodies (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.envelopes import envelope

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=40))
JSON = st.recursive(JSON_LEAF, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12)
FIELDS = ["signal_id", "tenant_id", "actor_id", "signal_kind", "signal_type", "occurred_at",
          "ingested_at", "schema_version", "resource", "payload", "trace_id", "sequence_no"]
OK_STATUSES = {202, 400, 413, 415}
FUZZ = hsettings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@FUZZ
@given(mutations=st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=4),
       drop=st.lists(st.sampled_from(FIELDS), max_size=3))
def test_fuzzed_envelope_fields(client, tokens, clean_db, mutations, drop) -> None:
    token = tokens("acme", "ubi:write:events")
    item = envelope(occurred_at=datetime(2026, 11, 20, 10, tzinfo=UTC))
    item.update(mutations)
    for key in drop:
        item.pop(key, None)
    resp = client.post("/v1/ubi/events", data=json.dumps({"events": [item, envelope()]}),
                       content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code in OK_STATUSES, resp.data
    if resp.status_code == 202:
        statuses = [r["status"] for r in resp.json["results"]]
        assert statuses[1] == "accepted"  # the good item survives its bad neighbour
        assert statuses[0] in {"accepted", "rejected", "duplicate"}


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                      st.lists(JSON, max_size=3).map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.just("events"), JSON).map(
                          lambda v: json.dumps(v).encode())))
def test_fuzzed_raw_bodies(client, tokens, clean_db, body) -> None:
    token = tokens("acme", "ubi:write:events")
    resp = client.post("/v1/ubi/events", data=body, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code in OK_STATUSES, (body, resp.data)
    assert resp.is_json
