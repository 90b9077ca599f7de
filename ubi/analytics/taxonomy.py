"""The vocabulary of UBI (SPEC §4, §5): event types, actor types, features, signal classes.

This module is the contract between ingestion (which keeps daily rollups with one counter per
canonical event type), storage and the analytics: every list here is ordered and stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CANONICAL_EVENT_TYPES: tuple[str, ...] = (
    "file_edited", "file_created", "file_deleted",
    "build_failed", "build_succeeded",
    "test_failed", "test_passed",
    "pr_created", "pr_merged", "pr_closed", "pr_reviewed", "pr_commented",
    "commit_created", "commit_pushed",
    "llm_request_submitted", "llm_request_completed", "llm_request_failed",
    "context_switch", "focus_session_started", "focus_session_ended",
    "gate_evaluated", "policy_violation", "override_attempted",
)
EVENT_TYPE_INDEX: dict[str, int] = {t: i for i, t in enumerate(CANONICAL_EVENT_TYPES)}

#: Event types that name a counterpart (``payload.counterpart_actor_id``).
COLLABORATION_EVENT_TYPES: frozenset[str] = frozenset(
    {"pr_created", "pr_merged", "pr_closed", "pr_reviewed", "pr_commented"})

#: Event types the flow features read as sequences (focus sessions, context switches).
SEQUENCE_EVENT_TYPES: frozenset[str] = frozenset(
    {"context_switch", "focus_session_started", "focus_session_ended"})

SIGNAL_KINDS: tuple[str, ...] = ("event", "metric", "log", "trace")

ActorType = Literal["human", "ai_agent", "service"]
ACTOR_TYPES: tuple[str, ...] = ("human", "ai_agent", "service")
ACTOR_TYPE_SYNONYMS: dict[str, str] = {
    "human": "human", "person": "human", "user": "human",
    "ai_agent": "ai_agent", "ai": "ai_agent", "agent": "ai_agent", "llm": "ai_agent",
    "service": "service", "system": "service", "automated": "service",
}

ActorScope = Literal["actor", "team", "cohort", "tenant"]
ACTOR_SCOPES: tuple[str, ...] = ("actor", "team", "cohort", "tenant")

DIMENSIONS: tuple[str, ...] = ("activity", "flow", "collaboration", "agent_usage")

WINDOWS: dict[str, int] = {"24h": 1, "7d": 7, "28d": 28}
"""Feature windows and their length in UTC days (a 24h window is one UTC day)."""

DAY_TYPES: tuple[str, ...] = ("workday", "weekend")

SEVERITIES: tuple[str, ...] = ("INFO", "WARN", "CRITICAL")
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

# --- daily rollups -------------------------------------------------------------------------

#: Per (tenant, actor, UTC day) counters kept by ingestion; one column each in ``daily_rollups``.
#: ``n_<event_type>`` counts events of that type; the rest are day-level counts.
ROLLUP_TYPE_COLUMNS: tuple[str, ...] = tuple(f"n_{t}" for t in CANONICAL_EVENT_TYPES)
ROLLUP_EXTRA_COLUMNS: tuple[str, ...] = ("event_count", "after_hours", "late_night")
ROLLUP_COUNTER_COLUMNS: tuple[str, ...] = ROLLUP_EXTRA_COLUMNS + ROLLUP_TYPE_COLUMNS


# --- features ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureSpec:
    name: str
    dimension: str
    #: Pure volume (counts of activity): never the trigger or primary input of a score or signal
    #: while the tenant prohibits volume-only metrics.
    volume_only: bool
    #: +1 when higher is healthier, -1 when lower is healthier, 0 when neither.
    health_direction: int
    windows: tuple[str, ...] = ("24h", "7d", "28d")
    unit: str = ""


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("event_count", "activity", True, 0, unit="events"),
    FeatureSpec("commit_count", "activity", True, 0, unit="commits"),
    FeatureSpec("active_days", "activity", False, +1, ("7d", "28d"), unit="days"),
    FeatureSpec("build_failure_rate", "activity", False, -1),
    FeatureSpec("test_failure_rate", "activity", False, -1),
    FeatureSpec("pr_throughput", "activity", False, +1, unit="PRs merged"),
    FeatureSpec("rework_ratio", "activity", False, -1),
    FeatureSpec("context_switch_rate", "flow", False, -1, unit="/h"),
    FeatureSpec("focus_session_avg_minutes", "flow", False, +1, unit="min"),
    FeatureSpec("after_hours_ratio", "flow", False, -1),
    FeatureSpec("late_night_events", "flow", False, -1, unit="events"),
    FeatureSpec("reviews_given", "collaboration", False, +1, unit="reviews"),
    FeatureSpec("distinct_collaborators", "collaboration", False, +1, unit="people"),
    FeatureSpec("cross_team_interactions", "collaboration", False, +1, unit="interactions"),
    FeatureSpec("llm_requests", "agent_usage", True, 0, unit="requests"),
    FeatureSpec("llm_failure_rate", "agent_usage", False, -1),
    FeatureSpec("llm_requests_per_work_item", "agent_usage", False, -1, unit="requests/item"),
    FeatureSpec("override_count", "agent_usage", False, -1, unit="overrides"),
)
FEATURE_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}


# --- signals -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignalClassSpec:
    name: str
    signal_type: Literal["risk", "opportunity", "informational"]
    dimension: str
    #: SPEC §5.5's ``actors`` column: ``human`` rules are about a person's hours, energy and
    #: collaboration and never fire on AI agents (or their cohort); ``both`` apply to anyone.
    actors: Literal["human", "both"] = "both"

    def applies_to(self, subject_type: str) -> bool:
        """Whether the rule may fire on a subject of this type (an actor's or cohort's
        ``actor_type``; team and tenant aggregates are ``mixed``)."""
        return self.actors == "both" or subject_type in ("human", "mixed")


SIGNAL_CLASSES: tuple[SignalClassSpec, ...] = (
    SignalClassSpec("burnout_risk", "risk", "flow", "human"),
    SignalClassSpec("rework_loop", "risk", "activity"),
    SignalClassSpec("context_thrash", "risk", "flow"),
    SignalClassSpec("engagement_drop", "risk", "activity", "human"),
    SignalClassSpec("guardrail_overrides", "risk", "agent_usage"),
    SignalClassSpec("mentoring_potential", "opportunity", "collaboration", "human"),
    SignalClassSpec("pair_work_candidate", "opportunity", "collaboration", "human"),
    SignalClassSpec("agent_usage_optimisation", "opportunity", "agent_usage"),
    SignalClassSpec("after_hours_activity", "informational", "flow", "human"),
)
SIGNAL_CLASS_BY_NAME: dict[str, SignalClassSpec] = {s.name: s for s in SIGNAL_CLASSES}
SIGNAL_TYPES: tuple[str, ...] = ("risk", "opportunity", "informational")
