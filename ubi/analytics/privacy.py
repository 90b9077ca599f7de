"""Privacy minimisation and pseudonymisation (SPEC §8).

- Allow-lists: payload and resource keys outside the tenant's ``allowed_properties`` for the
  event type are dropped; event types outside ``enabled_event_categories`` are not stored.
- Privacy tags: an envelope tagged with a tag the tenant drops (``resource.privacy_tags``)
  loses all of its payload and resource content; a property whose value is an object carrying
  ``privacy_tags`` with such a tag is dropped on its own.
- Pseudonyms: ``HMAC-SHA256(tenant key, actor_id)`` with the tenant key derived from the
  service secret, so the same person has unrelated pseudonyms in two tenants.

What was dropped is accounted by key name and count only, never by value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ubi.analytics.tenant_config import TenantConfig

#: Resource keys that become first-class fields of the event (never stored in ``resource``).
STRUCTURAL_RESOURCE_KEYS = frozenset({"actor_type", "team_id", "service_name", "privacy_tags"})
#: Properties holding actor ids: stored only as pseudonyms.
ACTOR_ID_PROPERTIES = frozenset({"counterpart_actor_id"})


@dataclass
class DropAccount:
    """Key names (and counts) removed from a batch, by reason. Never values."""

    disallowed_keys: Counter[str] = field(default_factory=Counter)
    tagged_keys: Counter[str] = field(default_factory=Counter)
    tagged_events: int = 0

    def merge(self, other: DropAccount) -> None:
        self.disallowed_keys.update(other.disallowed_keys)
        self.tagged_keys.update(other.tagged_keys)
        self.tagged_events += other.tagged_events

    @property
    def empty(self) -> bool:
        return not (self.disallowed_keys or self.tagged_keys or self.tagged_events)


class Pseudonymiser:
    """Stable per-tenant pseudonyms: 64 hex chars of HMAC-SHA256."""

    def __init__(self, secret: bytes):
        if not secret:
            raise ValueError("the pseudonym secret must not be empty")
        self._secret = secret
        self._tenant_keys: dict[str, bytes] = {}
        self._cache: dict[tuple[str, str], str] = {}

    def tenant_key(self, tenant_id: str) -> bytes:
        key = self._tenant_keys.get(tenant_id)
        if key is None:
            key = hmac.new(self._secret, b"ubi-tenant-key:" + tenant_id.encode(),
                           hashlib.sha256).digest()
            self._tenant_keys[tenant_id] = key
        return key

    def pseudonym(self, tenant_id: str, actor_id: str) -> str:
        cache_key = (tenant_id, actor_id)
        value = self._cache.get(cache_key)
        if value is None:
            value = hmac.new(self.tenant_key(tenant_id), actor_id.encode(),
                             hashlib.sha256).hexdigest()
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[cache_key] = value
        return value


def _tags_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        tags = value.get("privacy_tags")
        if isinstance(tags, list):
            return [t for t in tags if isinstance(t, str)]
    return []


def envelope_tags(resource: dict[str, Any] | None) -> list[str]:
    tags = (resource or {}).get("privacy_tags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def minimise(event_type: str, payload: dict[str, Any] | None, resource: dict[str, Any] | None,
             config: TenantConfig, account: DropAccount) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keep only allowed, untagged payload and resource keys: (properties, resource)."""
    drop_tags = config.drop_tags
    if drop_tags.intersection(envelope_tags(resource)):
        account.tagged_events += 1
        for key in payload or {}:
            account.tagged_keys[key] += 1
        for key in resource or {}:
            if key not in STRUCTURAL_RESOURCE_KEYS:
                account.tagged_keys[f"resource.{key}"] += 1
        return {}, {}
    allowed = config.allowed_keys_for(event_type)
    properties: dict[str, Any] = {}
    # Only an object value can carry tags: scalars skip the tag check.
    for key, value in (payload or {}).items():
        if isinstance(value, dict) and drop_tags.intersection(_tags_of(value)):
            account.tagged_keys[key] += 1
        elif key not in allowed:
            account.disallowed_keys[key] += 1
        else:
            properties[key] = value
    kept_resource: dict[str, Any] = {}
    for key, value in (resource or {}).items():
        if key in STRUCTURAL_RESOURCE_KEYS:
            continue
        if isinstance(value, dict) and drop_tags.intersection(_tags_of(value)):
            account.tagged_keys[f"resource.{key}"] += 1
        elif key not in allowed:
            account.disallowed_keys[f"resource.{key}"] += 1
        else:
            kept_resource[key] = value
    return properties, kept_resource


def pseudonymise_properties(properties: dict[str, Any], tenant_id: str,
                            pseudonymiser: Pseudonymiser) -> dict[str, Any]:
    """Replace actor ids inside properties by their pseudonyms (drop non-string ids)."""
    for key in ACTOR_ID_PROPERTIES & properties.keys():
        value = properties[key]
        if isinstance(value, str) and value:
            properties[key] = pseudonymiser.pseudonym(tenant_id, value)
        else:
            del properties[key]
    return properties
