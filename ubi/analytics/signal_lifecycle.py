"""The signal lifecycle (SPEC §5.5): rule firings become versioned ``BehaviouralSignal``s.

``reconcile_signals`` is a pure function over plain records: the signals active before a
run, the ``SignalCandidate``s the rules (``ubi.analytics.signals``) produced for the evaluated
days, and the run's time give the new and changed signal versions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ubi.analytics.anomalies import observed_at
from ubi.analytics.ids import signal_id
from ubi.analytics.taxonomy import SEVERITY_RANK

__all__ = ["SCORE_UPDATE_STEP", "SIGNAL_HOLD_DAYS", "Signal", "SignalCandidate",
           "SignalChange", "SignalChanges", "SignalKey", "reconcile_signals"]

#: A signal resolves after this many evaluated days on which its rule did not fire.
SIGNAL_HOLD_DAYS = 3
#: A firing signal gets a new version when severity or triggers change, or the score moves by
#: at least this much (smaller moves only refresh bookkeeping; no new version, no message).
SCORE_UPDATE_STEP = 5.0


@dataclass(frozen=True)
class SignalCandidate:
    """A rule firing for one subject on one day, before the lifecycle."""

    actor_scope: str
    subject_id: str
    signal_class: str
    signal_type: str
    dimension: str
    day: int
    severity: str
    score: float
    confidence: float
    reason: str
    evidence_refs: Mapping[str, Any]
    features_snapshot: Mapping[str, float | None]
    intent: str | None = None
    expected_outcome: str | None = None
    triggers: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.actor_scope, self.subject_id, self.signal_class)


SignalKey = tuple[str, str, str]
"""(actor_scope, subject_id, signal_class)."""


@dataclass(frozen=True)
class Signal:
    """A ``BehaviouralSignal`` (SPEC §5.5) as stored; ``version`` grows with every change.

    ``first_day`` / ``last_fired_day`` are UTC day numbers; ``days_without_fire`` counts the
    evaluated days since the rule last fired (resolution after ``SIGNAL_HOLD_DAYS``).
    """

    signal_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    dimension: str
    signal_class: str
    signal_type: str
    score: float
    severity: str
    confidence: float
    status: str
    reason: str
    evidence_refs: Mapping[str, Any]
    features_snapshot: Mapping[str, float | None]
    intent: str | None
    expected_outcome: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    version: int
    first_day: int
    last_fired_day: int
    days_without_fire: int = 0
    triggers: tuple[str, ...] = ()

    @property
    def key(self) -> SignalKey:
        return (self.actor_scope, self.subject_id, self.signal_class)


@dataclass(frozen=True)
class SignalChange:
    """One new version of a signal: ``kind`` is ``created``, ``updated`` or ``resolved``."""

    kind: str
    signal: Signal


@dataclass
class SignalChanges:
    """Result of ``reconcile_signals``.

    ``changes``: every new version in order (persist each, stream each, message id
    ``signal_id:version``). ``touched``: signals whose bookkeeping changed without a new version
    (persist, do not stream). ``active``: active signals after the run (next run's input).
    """

    changes: list[SignalChange] = field(default_factory=list)
    touched: list[Signal] = field(default_factory=list)
    active: dict[SignalKey, Signal] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Signal]:
        return [c.signal for c in self.changes if c.kind == kind]


def _significant(cur: Signal, c: SignalCandidate) -> bool:
    return (cur.severity != c.severity or abs(cur.score - c.score) >= SCORE_UPDATE_STEP
            or set(cur.triggers) != set(c.triggers))


def reconcile_signals(active: Mapping[SignalKey, Signal],
                      candidates: Iterable[SignalCandidate], evaluated_days: Sequence[int],
                      now: datetime, *, tenant_id: str,
                      hold_days: int = SIGNAL_HOLD_DAYS) -> SignalChanges:
    """Turn rule firings on ``evaluated_days`` into signal versions.

    One active signal per (scope, subject, class). A firing with no active signal creates one
    (version 1); a firing that changes severity, triggers or the score by >= 5 makes a new
    version; a signal whose rule has not fired on ``hold_days`` evaluated days is resolved
    (new version, ``resolved_at`` = end of that day). Days not in ``evaluated_days`` (e.g.
    incomplete days) neither fire nor count towards the hold.
    """
    by_key: dict[SignalKey, dict[int, SignalCandidate]] = defaultdict(dict)
    for c in candidates:
        prev = by_key[c.key].get(c.day)
        if prev is None or (SEVERITY_RANK[c.severity], c.score) > (
                SEVERITY_RANK[prev.severity], prev.score):
            by_key[c.key][c.day] = c
    days = sorted(set(int(d) for d in evaluated_days))
    state = {k: s for k, s in active.items() if s.status == "active"}
    original = dict(state)
    result = SignalChanges()
    last_versioned: dict[SignalKey, Signal] = {}

    for key in sorted(set(state) | set(by_key)):
        fires = by_key.get(key, {})
        for day in days:
            cur = state.get(key)
            fired = fires.get(day)
            at = observed_at(day, now)
            if fired is not None:
                c = fired
                if cur is None:
                    new = Signal(
                        signal_id=signal_id(tenant_id, c.actor_scope, c.subject_id,
                                            c.signal_class, day),
                        tenant_id=tenant_id, actor_scope=c.actor_scope,
                        subject_id=c.subject_id, dimension=c.dimension,
                        signal_class=c.signal_class, signal_type=c.signal_type, score=c.score,
                        severity=c.severity, confidence=c.confidence, status="active",
                        reason=c.reason, evidence_refs=c.evidence_refs,
                        features_snapshot=c.features_snapshot, intent=c.intent,
                        expected_outcome=c.expected_outcome, created_at=at, updated_at=at,
                        resolved_at=None, version=1, first_day=day, last_fired_day=day,
                        triggers=c.triggers)
                    state[key] = new
                    result.changes.append(SignalChange("created", new))
                    last_versioned[key] = new
                elif _significant(cur, c):
                    new = replace(cur, score=c.score, severity=c.severity,
                                  confidence=c.confidence, reason=c.reason,
                                  evidence_refs=c.evidence_refs,
                                  features_snapshot=c.features_snapshot, updated_at=at,
                                  version=cur.version + 1, last_fired_day=day,
                                  days_without_fire=0, triggers=c.triggers)
                    state[key] = new
                    result.changes.append(SignalChange("updated", new))
                    last_versioned[key] = new
                else:
                    state[key] = replace(cur, last_fired_day=day, days_without_fire=0)
            elif cur is not None and day > cur.last_fired_day:
                quiet = cur.days_without_fire + 1
                if quiet >= hold_days:
                    new = replace(cur, status="resolved", resolved_at=at, updated_at=at,
                                  version=cur.version + 1, days_without_fire=quiet)
                    del state[key]
                    result.changes.append(SignalChange("resolved", new))
                    last_versioned[key] = new
                else:
                    state[key] = replace(cur, days_without_fire=quiet)
        final = state.get(key)
        if final is not None and final != last_versioned.get(key, original.get(key)):
            result.touched.append(final)
    result.active = state
    return result
