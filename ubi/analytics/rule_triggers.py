"""Triggers of the signal rules (SPEC §5.5) and the candidates they make.

The machinery every rule of ``ubi.analytics.signals`` shares: which (feature, window)
anomalies trigger a rule (``RULE_TRIGGERS``), whether a trigger persists
(``persistence_rule``, ``persistent``), the supporting comparisons with a baseline
(``below_baseline`` / ``above_baseline``), and turning a fired (subject, day) into a
``SignalCandidate`` with its reason, evidence and features snapshot (``from_triggers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ubi.analytics.anomalies import SEVERITY_NAME, is_intensive
from ubi.analytics.explain import (
    build_evidence,
    describe_context,
    describe_deviation,
    event_summary,
)
from ubi.analytics.ids import baseline_id, feature_id
from ubi.analytics.rule_inputs import HitInfo, RuleInputs
from ubi.analytics.signal_lifecycle import SignalCandidate
from ubi.analytics.taxonomy import (
    FEATURE_BY_NAME,
    FEATURE_INDEX,
    FEATURES,
    SIGNAL_CLASS_BY_NAME,
    WINDOWS,
)
from ubi.analytics.tenant_config import TenantConfig

#: Persistence: an anomaly-based rule fires when one of its triggers was anomalous on at least
#: ``PERSIST_MIN_HITS`` of the last ``PERSIST_WORKDAYS`` workdays (SPEC §5.5 states it for
#: burnout_risk; every anomaly-based rule uses it; longer windows need more, see
#: ``persistence_rule``).
PERSIST_WORKDAYS = 5
PERSIST_MIN_HITS = 3
#: Daily hits within the last ``PERSIST_WORKDAYS`` workdays that confirm a multi-day trigger
#: before its own persistence (``persistent``).
EARLY_DAILY_HITS = 2


#: Windows whose anomalies trigger rules. A 28-day rolling value moves slowly, so the spread of
#: its daily values around their EWM mean is tiny and a small drift gives a large z; rules are
#: about current behaviour, so they read the 24h and 7d anomalies (28d anomalies are still
#: detected and stored; the 28d window drives ``mentoring_potential``).
RULE_WINDOWS: tuple[str, ...] = ("24h", "7d")

#: Anomaly triggers per rule: ((feature, windows), ...) and the direction that counts.
RULE_TRIGGERS: dict[str, tuple[tuple[tuple[str, tuple[str, ...]], ...], str]] = {
    "burnout_risk": ((("after_hours_ratio", ("24h", "7d")),
                      ("late_night_events", ("24h", "7d"))), "high"),
    "rework_loop": ((("build_failure_rate", RULE_WINDOWS), ("test_failure_rate", RULE_WINDOWS),
                     ("rework_ratio", RULE_WINDOWS)), "high"),
    "context_thrash": ((("context_switch_rate", RULE_WINDOWS),), "high"),
    "engagement_drop": ((("active_days", ("7d",)),
                         ("focus_session_avg_minutes", RULE_WINDOWS)), "low"),
    "guardrail_overrides": ((("override_count", RULE_WINDOWS),), "high"),
    "agent_usage_optimisation": ((("llm_failure_rate", RULE_WINDOWS),), "high"),
    "after_hours_activity": ((("after_hours_ratio", ("7d",)),), "high"),
}


OPPORTUNITY_TEXT: dict[str, tuple[str, str]] = {
    "mentoring_potential": (
        "recognise the review work and offer a mentoring or review-lead role",
        "review load spread more evenly; newer members get faster, better reviews"),
    "pair_work_candidate": (
        "suggest pairing or a second reviewer on the current work",
        "build/test failures and context switches back to the subject's normal within two "
        "weeks"),
    "agent_usage_optimisation": (
        "share effective agent usage patterns (prompting, task slicing) from the peer group",
        "llm failure rate and requests per work item back within the peer group's range"),
}


def trigger_allowed(feature: str, config: TenantConfig) -> bool:
    """A volume-only feature is never a trigger while the tenant prohibits volume-only use."""
    return not (config.prohibit_volume_only and FEATURE_BY_NAME[feature].volume_only)


@dataclass
class Trigger:
    feature: str
    window: str
    day_index: int
    info: HitInfo
    hits: int | None = None
    of: int | None = None
    severity: int = 1
    #: Hits on weekend days / holidays inside the span.
    days_off: int = 0
    #: How the trigger was confirmed when not by its own persistence (for the reason).
    note: str | None = None


def severity_mask(inputs: RuleInputs, feature: str, window: str, direction: str
                  ) -> np.ndarray | None:
    """[S, L] days the (feature, window) anomaly points in ``direction``; None without the
    window."""
    rw = inputs.windows.get(window)
    if rw is None:
        return None
    s = rw.severity[:, FEATURE_INDEX[feature], :]
    return s > 0 if direction == "high" else s < 0


def span_start(workday: np.ndarray, n_l: int, last: int) -> np.ndarray:
    """[L] first day of the span "the last ``last`` workdays up to each day": the ``last``-th
    most recent workday (day 0 while fewer workdays are loaded)."""
    wd = np.flatnonzero(workday)
    if wd.size == 0:
        return np.zeros(n_l, dtype=np.int64)
    j = np.searchsorted(wd, np.arange(n_l), side="right") - last  # index into wd
    return np.where(j >= 0, wd[np.clip(j, 0, None)], 0).astype(np.int64)


def span_counts(hits: np.ndarray, workday: np.ndarray, last: int) -> np.ndarray:
    """[S, L] days with a hit in the span of the last ``last`` workdays up to each day
    (inclusive). Days off inside the span count when they have a hit: weekend work is the
    most telling after-hours work, and agents work every day."""
    n_s, n_l = hits.shape
    csum = np.zeros((n_s, n_l + 1))
    csum[:, 1:] = np.cumsum(hits, axis=1)
    start = span_start(workday, n_l, last)
    return csum[:, 1:] - csum[:, start]


def below_baseline(inputs: RuleInputs, feature: str, window: str) -> np.ndarray:
    """[S, L] the supporting feature is below its baseline: more than one (effective) std
    under the mean. Within one std it is "flat", as the reasons say: a collaborator fewer
    than the average is not "fewer collaborators"."""
    rw = inputs.windows.get(window)
    if rw is None or feature not in rw.context:
        return np.zeros(inputs.present.shape, dtype=bool)
    value, mean, std, usable = rw.context[feature]
    with np.errstate(invalid="ignore"):
        return usable & (value < mean - np.nan_to_num(std))


def above_baseline(inputs: RuleInputs, feature: str, window: str) -> np.ndarray:
    """[S, L] more than one (effective) std above the baseline mean (see ``below_baseline``)."""
    rw = inputs.windows.get(window)
    if rw is None or feature not in rw.context:
        return np.zeros(inputs.present.shape, dtype=bool)
    value, mean, std, usable = rw.context[feature]
    with np.errstate(invalid="ignore"):
        return usable & (value > mean + np.nan_to_num(std))


def context_phrase(inputs: RuleInputs, feature: str, window: str, s: int, lday: int) -> str:
    rw = inputs.windows[window]
    value, mean, std, usable = rw.context[feature]
    return describe_context(feature, window, float(value[s, lday]), float(mean[s, lday]),
                            float(std[s, lday]), bool(usable[s, lday]))


def risk_score(triggers: Sequence[Trigger]) -> float:
    return float(min(100.0, 20.0 * max(abs(t.info.z) for t in triggers)))


def snapshot(inputs: RuleInputs, dimension: str, s: int, lday: int,
              extra: Iterable[tuple[str, str]] = ()) -> dict[str, float | None]:
    names = [f.name for f in FEATURES if f.dimension == dimension]
    snap: dict[str, float | None] = {}
    for w, rw in inputs.windows.items():
        for name in [*names, *(f for f, ew in extra if ew == w)]:
            if w not in FEATURE_BY_NAME[name].windows:
                continue
            v = float(rw.values[s, FEATURE_INDEX[name], lday])
            snap[f"{name}.{w}"] = None if np.isnan(v) else round(v, 4)
    return snap


def signal_evidence(inputs: RuleInputs, s: int, lday: int, triggers: Sequence[Trigger],
              context: Sequence[tuple[str, str]]) -> dict[str, Any]:
    tenant, scope, subject = inputs.tenant_id, inputs.scope, inputs.subject_ids[s]
    fids, bids, values = [], [], {}
    for t in triggers:
        day = inputs.day0 + t.day_index
        fids.append(feature_id(tenant, scope, subject, t.feature, t.window, day))
        day_type = "workday" if inputs.workday[t.day_index] else "weekend"
        bids.append(baseline_id(tenant, scope, subject, t.feature, t.window, day_type))
        values[f"{t.feature}.{t.window}"] = t.info.value
    for feature, w in context:
        fids.append(feature_id(tenant, scope, subject, feature, w, inputs.day0 + lday))
    span = max([WINDOWS[t.window] for t in triggers] + [WINDOWS[w] for _, w in context] + [1])
    first = max(0, lday - span + 1)
    summary = event_summary(inputs.counters[s, first:lday + 1], inputs.day0 + first,
                            inputs.day0 + lday)
    return build_evidence(fids, bids, summary, values)


def make_candidate(inputs: RuleInputs, rule: str, s: int, lday: int, *, severity: str,
               score: float, confidence: float, reason: str, evidence: Mapping[str, Any],
               triggers: Sequence[str], extra_snapshot: Iterable[tuple[str, str]] = ()
               ) -> SignalCandidate:
    spec = SIGNAL_CLASS_BY_NAME[rule]
    intent, outcome = OPPORTUNITY_TEXT.get(rule, (None, None))
    return SignalCandidate(
        actor_scope=inputs.scope, subject_id=inputs.subject_ids[s], signal_class=rule,
        signal_type=spec.signal_type, dimension=spec.dimension, day=inputs.day0 + lday,
        severity=severity, score=round(float(np.clip(score, 0.0, 100.0)), 1),
        confidence=round(float(np.clip(confidence, 0.0, 1.0)), 3), reason=reason,
        evidence_refs=evidence,
        features_snapshot=snapshot(inputs, spec.dimension, s, lday, extra_snapshot),
        intent=intent, expected_outcome=outcome, triggers=tuple(triggers))


def from_triggers(inputs: RuleInputs, rule: str, s: int, lday: int,
                   triggers: list[Trigger], context: Sequence[tuple[str, str]] = (),
                   risk: bool = True) -> SignalCandidate:
    triggers.sort(key=lambda t: (-t.severity, -abs(t.info.z), t.feature, t.window))
    parts = [describe_deviation(t.feature, t.window, t.info.value, t.info.mean, t.info.std,
                                t.info.z, hits=t.hits, of=t.of, days_off=t.days_off)
             + (f", {t.note}" if t.note else "") for t in triggers]
    parts += [context_phrase(inputs, f, w, s, lday) for f, w in context]
    sev = max(t.severity for t in triggers)
    return make_candidate(
        inputs, rule, s, lday,
        severity=SEVERITY_NAME[sev] if risk else "INFO",
        score=risk_score(triggers),
        confidence=float(np.mean([t.info.confidence for t in triggers])),
        reason="; ".join(parts), evidence=signal_evidence(inputs, s, lday, triggers, context),
        triggers=[f"{t.feature}.{t.window}" for t in triggers],
        extra_snapshot=[(t.feature, t.window) for t in triggers])


def fired_days(fired: np.ndarray, inputs: RuleInputs) -> Iterable[tuple[int, int]]:
    sub = fired[:, inputs.eval_offset:]
    ss, ll = np.nonzero(sub)
    return zip(ss.tolist(), (ll + inputs.eval_offset).tolist(), strict=True)


def drop_allowed(inputs: RuleInputs) -> dict[tuple[str, str], np.ndarray]:
    """Per (feature, window): days a drop may count: the window clean (no leave, quiet or
    incomplete day; for rates, shares and averages only no incomplete day, see
    ``RuleWindow``). The rule itself fires only on days the subject is present."""
    out: dict[tuple[str, str], np.ndarray] = {}
    for w, rw in inputs.windows.items():
        for spec in FEATURES:
            ok = rw.drop_ok
            if is_intensive(spec.name) and rw.drop_ok_intensive is not None:
                ok = rw.drop_ok_intensive
            out[(spec.name, w)] = ok
    return out


def trigger_masks(inputs: RuleInputs, rule: str, config: TenantConfig,
                   allowed: Mapping[tuple[str, str], np.ndarray] | None = None,
                   windows: Sequence[str] | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Per trigger (feature, window): [S, L] days on which it is anomalous in the rule's
    direction (and, with ``allowed``, that mask allows it that day)."""
    combos, direction = RULE_TRIGGERS[rule]
    out: dict[tuple[str, str], np.ndarray] = {}
    for feature, fwins in combos:
        if not trigger_allowed(feature, config):
            continue
        for w in fwins:
            if windows is not None and w not in windows:
                continue
            m = severity_mask(inputs, feature, w, direction)
            if m is None:
                continue
            if allowed is not None:
                m = m & allowed[(feature, w)]
            out[(feature, w)] = m
    return out


@dataclass
class Persistent:
    """Which subject-days a rule fires on by persistence, per trigger and in all."""

    fired: np.ndarray  # bool [S, L]: any trigger persists
    masks: dict[tuple[str, str], np.ndarray]  # trigger -> anomalous days [S, L]
    persists: dict[tuple[str, str], np.ndarray]  # trigger -> persisting days [S, L]
    #: trigger -> [S, L] daily hits within the last ``PERSIST_WORKDAYS`` workdays where a
    #: multi-day trigger was confirmed early by its 24h counterpart (``persistent``).
    early: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    #: trigger -> [S, L] days it persists only by a rule's corroboration (for the reason).
    corroborated: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    corroboration_note: str | None = None


def persistence_rule(w: int) -> tuple[int, int, bool]:
    """(hits, workdays, days off count) of the persistence rule for a w-day window.

    - 24h: anomalous on ``PERSIST_MIN_HITS`` (3) days within the span of the last
      ``PERSIST_WORKDAYS`` (5) workdays; days off inside the span count (weekend work is the
      most telling after-hours work, and agents work every day).
    - w > 1 days: a w-day value stays anomalous for the w days after a single unusual day, on
      up to ``k`` workdays (5 for 7 days), so anomalies of overlapping windows on k workdays
      are one piece of evidence. The trigger must be anomalous on more workdays than that,
      ``k + 1`` of the last ``k + 3`` (6 of the last 8 for 7d): the deviation has outlasted
      the window of any single day. Days off do not count (a weekend day's effect would
      otherwise cover 7 days).
    """
    if w <= 1:
        return PERSIST_MIN_HITS, PERSIST_WORKDAYS, True
    k = 5 * (w // 7) + min(w % 7, 5)
    return k + 1, k + 3, False


def persistent(inputs: RuleInputs, masks: Mapping[tuple[str, str], np.ndarray],
                direction: str | None = None, *, early_only: bool = False,
                daily: Mapping[tuple[str, str], np.ndarray] | None = None) -> Persistent:
    """Persistence of each trigger (feature, window) on each day (``persistence_rule``).

    With ``direction``, a multi-day trigger is also confirmed early: anomalous that workday
    while its 24h counterpart (the rule's own 24h mask where it has one) was anomalous on
    ``EARLY_DAILY_HITS`` days within the span of the last ``PERSIST_WORKDAYS`` workdays. A
    single unusual day keeps a 7-day value anomalous for a week but is one daily hit; two
    recent daily hits and a week-long deviation are a change under way, days before the
    7-day trigger alone would have persisted (issue 18: time to detect).

    ``early_only``: multi-day triggers persist only by that early confirmation (a rule's
    extra path, e.g. burnout's strong start). ``daily``: the 24h masks that confirm, when not
    those of ``masks``."""
    n_s, n_l = inputs.present.shape
    fired = np.zeros((n_s, n_l), dtype=bool)
    persists: dict[tuple[str, str], np.ndarray] = {}
    early: dict[tuple[str, str], np.ndarray] = {}
    for key, m in masks.items():
        need, last, days_off = persistence_rule(WINDOWS[key[1]])
        hits = m if days_off else m & inputs.workday[None, :]
        ok = span_counts(hits, inputs.workday, last) >= need
        if early_only:
            ok = np.zeros_like(ok)
        if direction is not None and WINDOWS[key[1]] > 1:
            day_mask = (daily or masks).get((key[0], "24h"))
            if day_mask is None:
                day_mask = severity_mask(inputs, key[0], "24h", direction)
            if day_mask is not None:
                counts = span_counts(day_mask, inputs.workday, PERSIST_WORKDAYS)
                confirmed = hits & (counts >= EARLY_DAILY_HITS)
                early[key] = np.where(confirmed & ~ok, counts, 0)
                ok = ok | confirmed
        persists[key] = ok
        fired |= ok
    return Persistent(fired, dict(masks), persists, early)


def persistent_triggers(inputs: RuleInputs, p: Persistent, s: int, lday: int
                         ) -> list[Trigger]:
    """The persisting triggers at (s, lday): numbers from the latest anomalous day, severity
    the highest of the recent hits, ``hits`` of ``of`` workdays for the reason."""
    n_l = inputs.present.shape[1]
    out = []
    for (feature, w), ok in p.persists.items():
        if not ok[s, lday]:
            continue
        _, last_n, days_off = persistence_rule(WINDOWS[w])
        start = int(span_start(inputs.workday, n_l, last_n)[lday])
        f = FEATURE_INDEX[feature]
        mask_row = p.masks[(feature, w)][s]
        sev_row = inputs.windows[w].severity[s, f]
        hit_days = [d for d in range(start, lday + 1) if mask_row[d]
                    and (days_off or inputs.workday[d])]
        last = hit_days[-1]
        trigger = Trigger(feature, w, last, inputs.windows[w].hits[(s, f, last)],
                           hits=len(hit_days), of=last_n,
                           severity=max(abs(int(sev_row[d])) for d in hit_days),
                           days_off=sum(1 for d in hit_days if not inputs.workday[d]))
        daily = p.early.get((feature, w))
        if daily is not None and daily[s, lday]:
            # confirmed early: the reason gives the daily evidence instead
            trigger.hits = trigger.of = None
            trigger.note = (f"its 24h value anomalous on {int(daily[s, lday])} days within "
                            f"the last {PERSIST_WORKDAYS} workdays")
        corroborated = p.corroborated.get((feature, w))
        if corroborated is not None and corroborated[s, lday]:
            trigger.hits = trigger.of = None
            trigger.note = p.corroboration_note
        out.append(trigger)
    return out


def gate(inputs: RuleInputs, fired: np.ndarray) -> np.ndarray:
    """No rule fires for a subject still in warm-up."""
    return fired if inputs.established is None else fired & inputs.established


def from_persistent(inputs: RuleInputs, rule: str, p: Persistent, fired: np.ndarray,
                     context: Sequence[tuple[str, str]] = (), risk: bool = True
                     ) -> list[SignalCandidate]:
    out = []
    for s, lday in fired_days(gate(inputs, fired), inputs):
        triggers = persistent_triggers(inputs, p, s, lday)
        if triggers:
            out.append(from_triggers(inputs, rule, s, lday, triggers, context, risk))
    return out
