"""JSON Schemas of what UBI sends to others (package data): the signal stream's message."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SIGNAL_MESSAGE = "signal_message.schema.json"


@cache
def load(name: str = SIGNAL_MESSAGE) -> dict[str, Any]:
    """A schema of this package, parsed."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def signal_message(message_id: str, routing_key: str, content_type: str, delivery_mode: int,
                   headers: dict[str, Any], body: bytes | str) -> dict[str, Any]:
    """The document ``signal_message.schema.json`` describes, from a received message."""
    return {"message_id": message_id, "routing_key": routing_key, "content_type": content_type,
            "delivery_mode": delivery_mode, "headers": dict(headers), "body": json.loads(body)}
