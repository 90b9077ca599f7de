"""SignalEnvelope validation and mapping to the internal BehaviouralEvent (SPEC §3, §4).

Validation runs on the web hot path, so it uses msgspec: the body is split into raw items in
one decode, and each item is validated on its own so one bad envelope never costs the batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from ubi.analytics import json_limits
from ubi.analytics.taxonomy import ACTOR_TYPE_SYNONYMS, CANONICAL_EVENT_TYPES
from ubi.analytics.tenant_config import TenantConfig

SUPPORTED_SCHEMA_MAJOR = 1
#: How far in the future an event may claim to have happened (clock skew of producers).
FUTURE_TOLERANCE = timedelta(days=1)

SCHEMA_VIOLATION = "SCHEMA_VIOLATION"
VALIDATION_ERROR = "VALIDATION_ERROR"
TENANT_ISOLATION_VIOLATION = "TENANT_ISOLATION_VIOLATION"
SIGNAL_TYPE_NOT_ALLOWED = "SIGNAL_TYPE_NOT_ALLOWED"

_CANONICAL = frozenset(CANONICAL_EVENT_TYPES)
_SCHEMA_VERSION = re.compile(r"^(\d+)(\.\d+){0,2}$")

OptStr128 = Annotated[str, msgspec.Meta(max_length=128)] | None

#: An optional id that travels with the event (``trace_id``, ``span_id``, ``correlation_id``).
TraceId = Annotated[OptStr128, msgspec.Meta(
    description="carried through to the event's features and signals")]

#: The keys of ``resource`` that mean something to UBI. Documentation only (the OpenAPI
#: document shows them): the hot path takes any object here, and what is kept of it is the
#: tenant's privacy policy's decision (``privacy.minimise``), not the schema's.
RESOURCE_KEYS: dict[str, Any] = {
    "repo": {"type": "string"},
    "branch": {"type": "string"},
    "service_name": {"type": "string", "description": "the event's source_system"},
    "module": {"type": "string"},
    "commit": {"type": "string"},
    "file_path": {"type": "string"},
    "actor_type": {"type": "string", "description": "human | ai_agent | service (synonyms "
                   "person/user, ai/agent/llm, system/automated); default human"},
    "team_id": {"anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "the actor's team, if any"},
    "privacy_tags": {"type": "array", "items": {"type": "string"}, "description": "a tag the "
                     "tenant drops removes the envelope's payload and resource content"},
}


# This one definition validates envelopes on the hot path and is the ``SignalEnvelope`` of the
# OpenAPI document (``ubi.web.msgspec_schemas``): the docstring and each ``description`` are
# the API's documentation, and a constraint stated here is checked here. ``validate_item``
# adds the rules a schema cannot state; each is named in its field's description.
class Envelope(msgspec.Struct, kw_only=True):
    """A SignalEnvelope as the ingestion platform sends it (SPEC §3). Unknown top-level keys
    are ignored. Each envelope of a batch is validated on its own."""

    signal_id: Annotated[str, msgspec.Meta(
        min_length=1, max_length=128,
        description="globally unique; the idempotency key (a repeat is a duplicate)")]
    tenant_id: Annotated[str, msgspec.Meta(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
        description="the caller's tenant, unless the caller is privileged")]
    signal_kind: Annotated[Literal["event", "metric", "log", "trace"], msgspec.Meta(
        description="only event is analysed; the others are accepted and counted, not stored")]
    signal_type: Annotated[str, msgspec.Meta(
        min_length=1, max_length=128,
        description="mapped to a canonical event type by the tenant's event_type_mapping "
                    "(SPEC §4); for signal_kind event one that maps to none is rejected")]
    occurred_at: Annotated[datetime, msgspec.Meta(
        tz=True, description="ISO 8601 with a UTC offset, which is kept (working hours are "
                             "local); at most a day in the future")]
    ingested_at: Annotated[datetime, msgspec.Meta(
        description="ISO 8601; a time without a UTC offset is read as UTC",
        extra_json_schema={"format": "date-time"})]
    schema_version: Annotated[str, msgspec.Meta(
        min_length=1, max_length=32, examples=["1.0"],
        description="MAJOR[.MINOR[.PATCH]]; major 1 is accepted, another major is rejected",
        extra_json_schema={"pattern": _SCHEMA_VERSION.pattern})]
    actor_id: Annotated[Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None,
                        msgspec.Meta(description="required for signal_kind event")] = None
    trace_id: TraceId = None
    span_id: TraceId = None
    correlation_id: TraceId = None
    resource: Annotated[
        Annotated[dict[str, Any], msgspec.Meta(extra_json_schema={"properties": RESOURCE_KEYS})]
        | None,
        msgspec.Meta(description="where the event happened and who did it; other keys are "
                                 "kept as far as the tenant allows (SPEC §8)")] = None
    payload: Annotated[dict[str, Any] | None, msgspec.Meta(
        description="type-specific properties, kept as far as the tenant allows (SPEC §8)")
    ] = None
    environment: Annotated[Annotated[str, msgspec.Meta(max_length=64)] | None,
                           msgspec.Meta(description="stored as metadata")] = None
    producer_id: Annotated[OptStr128, msgspec.Meta(
        description="stored as metadata; the source_system when resource.service_name is "
                    "absent")] = None
    sequence_no: Annotated[
        Annotated[int, msgspec.Meta(ge=-(2 ** 63), le=2 ** 63 - 1)] | None,
        msgspec.Meta(description="stored as metadata (a 64-bit signed integer)")] = None


class _Wrapped(msgspec.Struct):
    events: list[msgspec.Raw]


_decode_wrapped = msgspec.json.Decoder(_Wrapped)
_decode_list = msgspec.json.Decoder(list[msgspec.Raw])
_decode_envelope = msgspec.json.Decoder(Envelope)
_decode_envelopes = msgspec.json.Decoder(list[Envelope])


class BatchFormatError(ValueError):
    """The body as a whole is unusable (not JSON, not an object or array, no events)."""


_TOO_DEEP = (f"the body nests JSON too deeply to read; an envelope nests at most "
             f"{json_limits.MAX_DEPTH} levels")


def split_batch(body: bytes) -> list[msgspec.Raw]:
    """The raw items of ``{"events": [...]}`` or of a bare array, without validating them."""
    stripped = body.lstrip()
    if not stripped:
        raise BatchFormatError("empty body: expected {\"events\": [...]} or a JSON array")
    try:
        if stripped[:1] == b"[":
            return _decode_list.decode(body)
        if stripped[:1] == b"{":
            return _decode_wrapped.decode(body).events
    except msgspec.ValidationError as exc:
        raise BatchFormatError(f"expected {{\"events\": [...]}} or a JSON array: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BatchFormatError(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        # Deeper than the decoder can walk even to find the items: the whole body is refused.
        raise BatchFormatError(_TOO_DEEP) from exc
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BatchFormatError(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BatchFormatError(_TOO_DEEP) from exc
    raise BatchFormatError("expected a JSON object {\"events\": [...]} or a JSON array")


@dataclass(frozen=True)
class ItemError:
    code: str
    message: str


def canonical_event_type(signal_type: str, config: TenantConfig) -> str | None:
    """The canonical type a signal_type maps to under the tenant's mapping, if any."""
    mapped = config.event_type_mapping.get(signal_type, signal_type)
    return mapped if mapped in _CANONICAL else None


def validate_item(raw: bytes, *, caller_tenant: str | None, privileged: bool,
                  config_for: Any, now: datetime) -> tuple[Envelope | None, ItemError | None]:
    """Validate one raw envelope: (envelope, None) or (None or partial, error)."""
    if len(raw) > json_limits.MAX_ENVELOPE_BYTES:
        return None, ItemError(VALIDATION_ERROR, f"an envelope is at most "
                               f"{json_limits.MAX_ENVELOPE_BYTES} bytes of JSON; this one is "
                               f"{len(raw)}")
    try:  # the decoder passes invalid UTF-8 in unknown fields; the stored message cannot
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, ItemError(SCHEMA_VIOLATION, f"not valid UTF-8 (byte {exc.start} of the "
                               "envelope)")
    if json_limits.too_deep(raw):
        return None, ItemError(SCHEMA_VIOLATION, "an envelope nests JSON at most "
                               f"{json_limits.MAX_DEPTH} levels deep")
    try:
        env = _decode_envelope.decode(raw)
    except msgspec.ValidationError as exc:
        return None, ItemError(SCHEMA_VIOLATION, str(exc))
    except msgspec.DecodeError as exc:
        return None, ItemError(SCHEMA_VIOLATION, f"not a JSON object: {exc}")
    if _NUL_ESCAPE in raw:  # rare: the exact check decodes the item once more
        where = unstorable_text_at(msgspec.json.decode(raw))
        if where is not None:
            return env, ItemError(SCHEMA_VIOLATION, "text may not contain the NUL character "
                                  f"(\\u0000), which cannot be stored - at `{where}`")
    match = _SCHEMA_VERSION.match(env.schema_version)
    if match is None:
        return env, ItemError(
            SCHEMA_VIOLATION,
            "schema_version must be MAJOR[.MINOR[.PATCH]] - at `$.schema_version`")
    if int(match.group(1)) != SUPPORTED_SCHEMA_MAJOR:
        return env, ItemError(VALIDATION_ERROR,
                              f"schema_version major {match.group(1)} is not supported "
                              f"(accepted: {SUPPORTED_SCHEMA_MAJOR}.x)")
    if not privileged and env.tenant_id != caller_tenant:
        return env, ItemError(TENANT_ISOLATION_VIOLATION,
                              f"tenant_id {env.tenant_id!r} is not the caller's tenant")
    if env.signal_kind == "event":
        if env.actor_id is None:
            return env, ItemError(VALIDATION_ERROR,
                                  "actor_id is required for signal_kind 'event'")
        if canonical_event_type(env.signal_type, config_for(env.tenant_id)) is None:
            return env, ItemError(SIGNAL_TYPE_NOT_ALLOWED,
                                  f"signal_type {env.signal_type!r} maps to no canonical "
                                  "event type")
    if env.occurred_at > now + FUTURE_TOLERANCE:
        return env, ItemError(VALIDATION_ERROR,
                              "occurred_at is more than a day in the future")
    return env, None


_NUL_ESCAPE = b"\\u0000"


#: Text PostgreSQL cannot store: the NUL character, and half of a UTF-16 surrogate pair (a JSON
#: ``\\u`` escape may encode one alone, and Python then holds it as such; UTF-8 cannot encode
#: it either, so it cannot be hashed into a pseudonym). msgspec already refuses lone surrogates
#: in envelopes; the API's other JSON bodies are decoded by Flask, which keeps them.
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def unstorable_text_at(value: Any, path: str = "$") -> str | None:
    """Where a decoded JSON value holds text that cannot be stored (in a string or an object
    key), or None."""
    if isinstance(value, str):
        return path if UNSTORABLE_TEXT.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if UNSTORABLE_TEXT.search(key):
                return f"{path}.{key!r}"
            found = unstorable_text_at(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = unstorable_text_at(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def decode_envelopes(payload: bytes | str) -> list[Envelope]:
    """Decode a JSON array of envelopes that were validated at acceptance."""
    return _decode_envelopes.decode(payload)


def actor_type_of(env: Envelope) -> str:
    """``resource.actor_type``, else ``payload.actor_type``, else
    ``payload.attributes.actor_type``; synonyms folded; default ``human``."""
    candidates: list[Any] = []
    if env.resource:
        candidates.append(env.resource.get("actor_type"))
    if env.payload:
        candidates.append(env.payload.get("actor_type"))
        attrs = env.payload.get("attributes")
        if isinstance(attrs, dict):
            candidates.append(attrs.get("actor_type"))
    for value in candidates:
        if isinstance(value, str):
            folded = ACTOR_TYPE_SYNONYMS.get(value.strip().lower())
            if folded:
                return folded
    return "human"


def utc_offset_minutes(ts: datetime) -> int:
    offset = ts.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def as_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
