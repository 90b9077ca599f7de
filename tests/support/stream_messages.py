"""The signal stream's message contract, checked on what a test consumed from the broker:
``ubi/schemas/signal_message.schema.json`` plus what a schema cannot say (the message id and
routing key agree with the body)."""

from __future__ import annotations

from typing import Any

import jsonschema

from ubi import schemas
from ubi.integrations import routing

VALIDATOR = jsonschema.Draft202012Validator(
    schemas.load(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validated(message: Any) -> dict[str, Any]:
    """The contract's document of a py-amqp ``message`` (``basic_get``), validated."""
    headers = dict(message.properties.get("application_headers") or {})
    doc = schemas.signal_message(
        message.properties.get("message_id"), message.delivery_info["routing_key"],
        message.properties.get("content_type"), message.properties.get("delivery_mode"),
        headers, message.body)
    VALIDATOR.validate(doc)
    body = doc["body"]
    assert doc["message_id"] == f"{body['signal_id']}:{body['version']}"
    assert headers["tenant_id"] == body["tenant_id"]
    assert doc["routing_key"] == routing.routing_key(
        body["tenant_id"], body["actor_scope"], body["dimension"], body["signal_type"],
        body["signal_class"], body["severity"])
    return doc
