"""Hostile JSON never crashes a request: nesting and size are bounded before decoding and
answered with a 4xx naming the limit, and a batch keeps its good items.

Each envelope field in turn gets deep arrays, deep objects, a huge number, a long string and
invalid UTF-8; whole bodies nest past the decoder's recursion limit; the other JSON routes
(config, signal queries) get the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.envelopes import envelope
from ubi.analytics import json_limits

FIELDS = ["signal_id", "tenant_id", "actor_id", "signal_kind", "signal_type", "occurred_at",
          "ingested_at", "schema_version", "resource", "payload", "trace_id", "sequence_no",
          "privacy_tags", "environment", "producer_id"]
PLACEHOLDER = '"__HOSTILE__"'


def deep_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


HOSTILE: dict[str, bytes] = {
    "deep arrays": deep_arrays(3000),
    "deep objects": deep_objects(300),
    "huge number": b"1" + b"0" * 5000,
    "huge exponent": b"1e999999",
    "long string": b'"' + b"x" * 200_000 + b'"',
    "invalid utf-8": b'"\xff\xfe\xc3\x28"',
    "lone surrogate": b'"\\ud800"',
}

#: What the batch decoder cannot read at all: the whole body is refused, saying why.
REFUSED_WHOLE = {"deep arrays": "nests JSON too deeply",  # deeper than any decoder walks
                 "lone surrogate": "hex escape"}  # half a UTF-16 pair: malformed to msgspec


def post(client, token: str, body: bytes, path: str = "/v1/ubi/events",
         method: str = "post") -> tuple[int, dict]:
    call: Callable = getattr(client, method)
    resp = call(path, data=body, content_type="application/json",
                headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code < 500, (path, body[:200], resp.data[:500])
    assert resp.is_json
    return resp.status_code, resp.json


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_every_field_of_an_envelope(client, tokens, clean_db, kind: str) -> None:
    token = tokens("acme", "ubi:write:events")
    for field in FIELDS:
        bad, good = envelope(), envelope()
        bad[field] = "__HOSTILE__"
        text = json.dumps({"events": [bad, good]}).encode().replace(PLACEHOLDER.encode(),
                                                                   HOSTILE[kind])
        status, answer = post(client, token, text)
        if kind in REFUSED_WHOLE:
            assert status == 400 and REFUSED_WHOLE[kind] in answer["message"], (field, answer)
            continue
        assert status == 202, (field, kind, answer)
        first, second = answer["results"]
        assert second["status"] == "accepted", (field, kind)  # the good item survives
        if kind == "deep objects":
            assert first["status"] == "rejected", field
            assert f"at most {json_limits.MAX_DEPTH} levels" in first["error_message"]
        elif kind == "invalid utf-8" and first["status"] == "rejected":
            assert first["error_code"] == "SCHEMA_VIOLATION", (field, first)


def test_the_limits_are_named_for_envelopes(client, tokens, clean_db) -> None:
    token = tokens("acme", "ubi:write:events")
    deep, big, good = envelope(), envelope(), envelope()
    deep["payload"] = json.loads(deep_objects(json_limits.MAX_DEPTH))
    big["payload"] = {"outcome": "x" * json_limits.MAX_ENVELOPE_BYTES}
    status, answer = post(client, token, json.dumps({"events": [deep, big, good]}).encode())
    assert status == 202
    assert [r["status"] for r in answer["results"]] == ["rejected", "rejected", "accepted"]
    assert answer["results"][0]["error_message"] == (
        f"an envelope nests JSON at most {json_limits.MAX_DEPTH} levels deep")
    assert f"at most {json_limits.MAX_ENVELOPE_BYTES} bytes" in \
        answer["results"][1]["error_message"]
    # Just within the depth limit is fine (the envelope and its payload are two levels).
    ok = envelope(payload=json.loads(deep_objects(json_limits.MAX_DEPTH - 2)))
    status, answer = post(client, token, json.dumps({"events": [ok]}).encode())
    assert answer["results"][0]["status"] == "accepted"


@pytest.mark.parametrize("body", [deep_arrays(3000), deep_objects(3000),
                                  b'{"stale_after_seconds": ' + deep_arrays(100) + b"}"])
def test_other_json_routes_refuse_deep_bodies(client, tokens, clean_db, body: bytes) -> None:
    writer = tokens("acme", "ubi:write:config")
    status, answer = post(client, writer, body, "/v1/ubi/config/acme", "put")
    assert status == 400 and answer["message"] == (
        f"JSON nests at most {json_limits.MAX_DEPTH} levels deep")
    reader = tokens("acme", "ubi:read:tenant")
    status, answer = post(client, reader, body, "/v1/ubi/query/signals")
    assert status == 400


def test_other_json_routes_refuse_big_bodies(client, tokens, clean_db) -> None:
    writer = tokens("acme", "ubi:write:config")
    body = b'{"note": "' + b"x" * json_limits.MAX_BODY_BYTES + b'"}'
    status, answer = post(client, writer, body, "/v1/ubi/config/acme", "put")
    assert status == 413 and str(json_limits.MAX_BODY_BYTES) in answer["message"]


def test_too_deep_ignores_brackets_inside_strings() -> None:
    text = json.dumps({"a": "[" * 100 + '\\"{' * 50}).encode()
    assert not json_limits.too_deep(text)
    assert json_limits.too_deep(deep_arrays(json_limits.MAX_DEPTH + 1))
    assert not json_limits.too_deep(deep_arrays(json_limits.MAX_DEPTH))
