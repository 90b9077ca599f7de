"""Routing keys and subscription bindings of the signal stream (SPEC §12): what the broker
matches is what the filters say."""

from __future__ import annotations

import itertools

from ubi.analytics.taxonomy import ACTOR_SCOPES, SEVERITIES, SIGNAL_CLASSES
from ubi.integrations.routing import (
    SubscriptionSpec,
    binding_keys,
    routing_key,
    topic_matches,
)


def test_the_routing_key_has_six_words_with_the_class() -> None:
    assert routing_key("acme", "actor", "flow", "risk", "burnout_risk", "WARN") == \
        "acme.actor.flow.risk.burnout_risk.WARN"
    # A dot in a tenant id would make seven words and match nothing: it is escaped.
    assert routing_key("acme.eu", "team", "flow", "risk", "context_thrash", "INFO") == \
        "acme%2Eeu.team.flow.risk.context_thrash.INFO"


def test_defaults_bind_everything_and_warn_and_above() -> None:
    assert binding_keys(SubscriptionSpec("ubi.signals.mmm")) == ["#"]
    assert binding_keys(SubscriptionSpec("ubi.signals.detection", min_severity="WARN")) == [
        "*.*.*.*.*.WARN", "*.*.*.*.*.CRITICAL"]


def _all_keys(tenants: tuple[str, ...]) -> list[tuple[dict[str, str], str]]:
    out = []
    for tenant, scope, cls, severity in itertools.product(
            tenants, ACTOR_SCOPES, SIGNAL_CLASSES, SEVERITIES):
        fields = {"tenant": tenant, "scope": scope, "dimension": cls.dimension,
                  "type": cls.signal_type, "class": cls.name, "severity": severity}
        out.append((fields, routing_key(tenant, scope, cls.dimension, cls.signal_type,
                                        cls.name, severity)))
    return out


def test_bindings_deliver_exactly_what_the_filters_allow() -> None:
    spec = SubscriptionSpec("s", tenants=("acme", "a.b"), actor_scopes=("actor", "team"),
                            dimensions=("flow",), signal_types=("risk",),
                            min_severity="WARN")
    keys = binding_keys(spec)
    assert len(keys) == 2 * 2 * 1 * 1 * 1 * 2
    for fields, key in _all_keys(("acme", "a.b", "globex", "acme.x")):
        wanted = (fields["tenant"] in ("acme", "a.b") and fields["scope"] in ("actor", "team")
                  and fields["dimension"] == "flow" and fields["type"] == "risk"
                  and fields["severity"] in ("WARN", "CRITICAL"))
        assert any(topic_matches(k, key) for k in keys) == wanted, key


def test_topic_matching_follows_rabbitmq() -> None:
    assert topic_matches("#", "a.b.c") and topic_matches("a.#", "a") and \
        topic_matches("*.b.#", "a.b.c.d")
    assert not topic_matches("*.b", "a.b.c") and not topic_matches("a.*", "a")


def test_invalid_subscriptions_say_what_is_wrong() -> None:
    problems = SubscriptionSpec("x y", dimensions=("mood",), min_severity="LOW",
                                overflow="drop", max_length=0, tenants=("a*",)).validate()
    text = "; ".join(problems)
    for word in ("name", "dimensions", "min_severity", "overflow", "max_length", "tenants"):
        assert word in text
    assert SubscriptionSpec("ok", signal_classes=("rework_loop",)).validate() == []
    huge = SubscriptionSpec("huge", tenants=tuple(f"t{i}" for i in range(100)),
                            actor_scopes=ACTOR_SCOPES)
    assert any("bindings" in p for p in huge.validate())
