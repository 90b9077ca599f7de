"""The internal ``BehaviouralEvent`` and the envelope → event mapping (SPEC §3, §4, §8)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from ubi.analytics.envelope import (
    Envelope,
    actor_type_of,
    as_utc,
    canonical_event_type,
    utc_offset_minutes,
)
from ubi.analytics.privacy import (
    ACTOR_ID_PROPERTIES,
    DropAccount,
    Pseudonymiser,
    envelope_tags,
    minimise,
    pseudonymise_properties,
)
from ubi.analytics.tenant_config import TenantConfig


class BehaviouralEvent(msgspec.Struct, kw_only=True):
    """A stored event: minimised, pseudonymised, with its original UTC offset."""

    event_id: str
    tenant_id: str
    actor_id: str  # pseudonym
    actor_type: str
    team_id: str | None
    source_system: str | None
    event_type: str
    timestamp_utc: datetime
    epoch_s: int
    utc_offset_minutes: int
    ingested_at: datetime
    properties: dict[str, Any]
    resource: dict[str, Any]
    privacy_tags: list[str]
    schema_version: str
    trace_id: str | None = None
    span_id: str | None = None
    correlation_id: str | None = None
    environment: str | None = None
    producer_id: str | None = None
    sequence_no: int | None = None

    @property
    def counterpart_id(self) -> str | None:
        value = self.properties.get("counterpart_actor_id")
        return value if isinstance(value, str) else None

    @property
    def work_item_id(self) -> str | None:
        value = self.properties.get("work_item_id")
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)[:256]
        return None


class MappingOutcome(msgspec.Struct):
    event: BehaviouralEvent | None
    #: Why nothing was produced: ``disallowed_type`` or ``unsupported_signal_kind``.
    dropped: str | None = None


def _str_or_none(value: Any, limit: int = 256) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def map_envelope(env: Envelope, config: TenantConfig, pseudonymiser: Pseudonymiser,
                 account: DropAccount) -> MappingOutcome:
    """Envelope → minimised, pseudonymised event (or the reason it is not stored)."""
    events, dropped = map_envelopes([env], config, pseudonymiser, account)
    return MappingOutcome(events[0]) if events else MappingOutcome(None, dropped[0][1])


_UNSEEN = object()


def map_envelopes(envelopes: Iterable[Envelope], config: TenantConfig,
                  pseudonymiser: Pseudonymiser, account: DropAccount
                  ) -> tuple[list[BehaviouralEvent], list[tuple[Envelope, str]]]:
    """Map one tenant's envelopes: the events to store, in order, and the envelopes not
    stored with the reason (``unsupported_signal_kind`` or ``disallowed_type``).

    One loop with the per-batch lookups (type mapping, allow-list) cached: this runs for every
    ingested event.
    """
    events: list[BehaviouralEvent] = []
    dropped: list[tuple[Envelope, str]] = []
    types: dict[str, Any] = {}
    enabled = config.enabled_event_types
    for env in envelopes:
        if env.signal_kind != "event":
            dropped.append((env, "unsupported_signal_kind"))
            continue
        event_type = types.get(env.signal_type, _UNSEEN)
        if event_type is _UNSEEN:
            event_type = canonical_event_type(env.signal_type, config)
            if event_type not in enabled:
                event_type = None
            types[env.signal_type] = event_type
        if event_type is None:
            dropped.append((env, "disallowed_type"))
            continue
        assert env.actor_id is not None  # validated at acceptance for kind "event"
        resource = env.resource or {}
        properties, kept_resource = minimise(event_type, env.payload, resource, config, account)
        if not ACTOR_ID_PROPERTIES.isdisjoint(properties):
            properties = pseudonymise_properties(properties, env.tenant_id, pseudonymiser)
        occurred = env.occurred_at
        ts = as_utc(occurred)
        events.append(BehaviouralEvent(
            event_id=env.signal_id,
            tenant_id=env.tenant_id,
            actor_id=pseudonymiser.pseudonym(env.tenant_id, env.actor_id),
            actor_type=actor_type_of(env),
            team_id=_str_or_none(resource.get("team_id")),
            source_system=_str_or_none(resource.get("service_name")) or _str_or_none(
                env.producer_id),
            event_type=event_type,
            timestamp_utc=ts,
            epoch_s=int(ts.timestamp()),
            utc_offset_minutes=utc_offset_minutes(occurred),
            ingested_at=as_utc(env.ingested_at),
            properties=properties,
            resource=kept_resource,
            privacy_tags=envelope_tags(resource),
            schema_version=env.schema_version,
            trace_id=env.trace_id,
            span_id=env.span_id,
            correlation_id=env.correlation_id,
            environment=env.environment,
            producer_id=env.producer_id,
            sequence_no=env.sequence_no,
        ))
    return events, dropped
