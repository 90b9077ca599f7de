"""Routing keys and subscription bindings of the signal stream (SPEC §12), pure functions.

Routing key: ``<tenant>.<actor_scope>.<dimension>.<signal_type>.<signal_class>.<severity>``.
A tenant id may contain dots (``[A-Za-z0-9_.-]``), which would split its word of the key, so
a dot is written ``%2E`` there (``%`` never occurs in a tenant id). A subscription's filters
become topic bindings: the product of its allowed values, ``*`` where it allows any, one
binding per severity at or above its minimum; ``#`` when it filters nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ubi.analytics.taxonomy import (
    ACTOR_SCOPES,
    DIMENSIONS,
    SEVERITIES,
    SEVERITY_RANK,
    SIGNAL_CLASS_BY_NAME,
    SIGNAL_TYPES,
)

#: A subscription whose filters multiply out to more bindings than this is refused: RabbitMQ
#: matches every binding on every publish.
MAX_BINDINGS = 512
OVERFLOW_POLICIES = ("park", "reject")


def tenant_word(tenant_id: str) -> str:
    return tenant_id.replace(".", "%2E")


def routing_key(tenant_id: str, actor_scope: str, dimension: str, signal_type: str,
                signal_class: str, severity: str) -> str:
    return ".".join((tenant_word(tenant_id), actor_scope, dimension, signal_type, signal_class,
                     severity))


@dataclass(frozen=True)
class SubscriptionSpec:
    """A named subscription: allowed values per routing-key word (empty = any)."""

    name: str
    tenants: tuple[str, ...] = ()
    actor_scopes: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    signal_types: tuple[str, ...] = ()
    signal_classes: tuple[str, ...] = ()
    min_severity: str = "INFO"
    overflow: str = "park"
    max_length: int = 100_000

    def validate(self) -> list[str]:
        """What is wrong with this subscription (empty when nothing)."""
        problems = []
        if not self.name or any(c.isspace() for c in self.name) or len(self.name) > 200:
            problems.append("name: 1-200 characters, no spaces")
        for label, values, allowed in (
                ("actor_scopes", self.actor_scopes, ACTOR_SCOPES),
                ("dimensions", self.dimensions, DIMENSIONS),
                ("signal_types", self.signal_types, SIGNAL_TYPES),
                ("signal_classes", self.signal_classes, tuple(SIGNAL_CLASS_BY_NAME))):
            unknown = sorted(set(values) - set(allowed))
            if unknown:
                problems.append(f"{label}: unknown {unknown}; known {list(allowed)}")
        bad_tenants = [t for t in self.tenants if not t or any(c in t for c in "*#% ")]
        if bad_tenants:
            problems.append(f"tenants: invalid {bad_tenants}")
        if self.min_severity not in SEVERITIES:
            problems.append(f"min_severity: one of {list(SEVERITIES)}")
        if self.overflow not in OVERFLOW_POLICIES:
            problems.append(f"overflow: one of {list(OVERFLOW_POLICIES)}")
        if not 1 <= self.max_length <= 10_000_000:
            problems.append("max_length: 1..10,000,000")
        if not problems and len(binding_keys(self)) > MAX_BINDINGS:
            problems.append(f"filters multiply out to more than {MAX_BINDINGS} bindings")
        return problems


def _words(values: Sequence[str]) -> Sequence[str]:
    return list(values) or ["*"]


def binding_keys(spec: SubscriptionSpec) -> list[str]:
    """The topic binding patterns that deliver exactly what ``spec`` allows."""
    severities = [s for s in SEVERITIES if SEVERITY_RANK[s] >= SEVERITY_RANK[spec.min_severity]]
    if not (spec.tenants or spec.actor_scopes or spec.dimensions or spec.signal_types
            or spec.signal_classes) and len(severities) == len(SEVERITIES):
        return ["#"]
    return [".".join(words) for words in itertools.product(
        [tenant_word(t) for t in spec.tenants] or ["*"], _words(spec.actor_scopes),
        _words(spec.dimensions), _words(spec.signal_types), _words(spec.signal_classes),
        severities)]


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ's topic match of a binding ``pattern`` against a routing ``key``."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
