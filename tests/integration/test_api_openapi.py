"""The OpenAPI document (issue 17): a valid OpenAPI 3.0 document, whose ``SignalEnvelope`` is
the msgspec Struct the hot path validates envelopes with, not a copy of it."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate

from tests.support.envelopes import envelope
from ubi import clock
from ubi.analytics.envelope import Envelope, validate_item
from ubi.analytics.tenant_config import TenantConfig
from ubi.web.msgspec_schemas import openapi_components

ENVELOPE = "#/components/schemas/SignalEnvelope"


@pytest.fixture
def spec(client) -> dict[str, Any]:
    resp = client.get("/v1/ubi/openapi.json")
    assert resp.status_code == 200
    return resp.json


def test_the_document_is_a_valid_openapi_3_0_document(spec) -> None:
    assert spec["openapi"].startswith("3.0.")
    validate(spec)  # raises OpenAPIValidationError, naming the offending part
    # Every status an operation answers is listed for it: no catch-all `default`.
    assert [(path, method) for path, item in spec["paths"].items()
            for method, op in item.items()
            if isinstance(op, dict) and "default" in op.get("responses", {})] == []


def test_signal_envelope_is_generated_from_the_msgspec_struct(spec) -> None:
    component = spec["components"]["schemas"]["SignalEnvelope"]
    assert component == openapi_components({"SignalEnvelope": Envelope})["SignalEnvelope"]
    assert "#/$defs/" not in json.dumps(spec)
    assert set(component["required"]) == {"signal_id", "tenant_id", "signal_kind",
                                          "signal_type", "occurred_at", "ingested_at",
                                          "schema_version"}
    fields = component["properties"]
    assert (fields["signal_id"]["maxLength"], fields["tenant_id"]["maxLength"],
            fields["actor_id"]["maxLength"]) == (128, 64, 256)
    assert fields["occurred_at"]["format"] == fields["ingested_at"]["format"] == "date-time"
    assert fields["actor_id"]["nullable"] is True
    assert "description" in fields["signal_id"] and "actor_type" in fields["resource"][
        "properties"]
    # The batch body refers to that component in both of its shapes.
    body = spec["paths"]["/v1/ubi/events"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    batch, array = body["oneOf"]
    assert spec["components"]["schemas"]["SignalBatch"]["properties"]["events"]["items"] == {
        "$ref": ENVELOPE} == array["items"]
    assert batch == {"$ref": "#/components/schemas/SignalBatch"}


@pytest.mark.parametrize("change, accepted", [
    ({}, True),
    ({"resource": None, "payload": None, "actor_id": "a" * 256}, True),
    ({"signal_id": "x" * 129}, False),
    ({"tenant_id": "acme corp"}, False),
    ({"signal_kind": "span"}, False),
    ({"occurred_at": "2026-06-17T10:00:00"}, False),  # no UTC offset
    ({"actor_id": ""}, False),
    ({"sequence_no": "7"}, False),
])
def test_the_documented_schema_and_the_hot_path_agree(spec, change, accepted) -> None:
    item = {**envelope("acme"), **change}
    documented = OAS30Validator(spec["components"]["schemas"]["SignalEnvelope"],
                                format_checker=oas30_format_checker).is_valid(item)
    _, error = validate_item(msgspec.json.encode(item), caller_tenant="acme", privileged=True,
                             config_for=lambda _: TenantConfig.default(),
                             now=clock.utcnow())
    assert (documented, error is None or error.code != "SCHEMA_VIOLATION") == (
        accepted, accepted), error


def test_every_route_documents_the_errors_it_can_give(spec) -> None:
    """A dependency down is a 503 on any route that uses one; a body too large a 413 on any
    route that takes a body (not only where a view says so)."""
    operations = [(path, method, op) for path, ops in spec["paths"].items()
                  for method, op in ops.items() if isinstance(op, dict) and "responses" in op]
    assert len(operations) >= 17
    for path, method, op in operations:
        codes = set(op["responses"])
        if path not in ("/v1/ubi/health", "/v1/ubi/metrics"):
            assert "503" in codes, (method, path)
        if "requestBody" in op:
            assert "413" in codes, (method, path)
    unavailable = spec["components"]["responses"]["DEPENDENCY_UNAVAILABLE"]
    assert "Retry-After" in unavailable["headers"]
    # a view's own description wins
    assert spec["paths"]["/v1/ubi/events"]["post"]["responses"]["503"]["description"] == (
        "broker or database down; retry")
