"""The nine signal rules of SPEC §5.5.

Rule evaluation is vectorised over subjects and days of one scope (``RuleInputs``, built by the
engine from the per-window detections); only the (subject, day) pairs where a rule fires are
turned into ``SignalCandidate`` records with a reason and evidence. The lifecycle that turns
them into versioned signals is ``ubi.analytics.signal_lifecycle``.

Rules (thresholds are the tenant's anomaly thresholds unless stated; "anomalous" = an anomaly of
at least WARN severity from a usable baseline, see ``anomalies.detect``). Every anomaly trigger
must **persist** (``persistence_rule``): a 24h trigger on 3 days within the span of the last 5
workdays (days off in the span count), a 7d trigger on 6 of the last 8 workdays (more than
the 5 workdays a single unusual day keeps a 7-day value anomalous). No rule fires for a
subject in warm-up (``RuleInputs.established``). "Below / above baseline" for a supporting
feature means beyond one (effective) std of the mean ("flat" within it, as reasons say).

============================ =================================================================
``burnout_risk``             ``after_hours_ratio`` or ``late_night_events`` 24h anomalous-high,
                             persisting (a late Friday night and weekend make three days; a
                             late-night day only while the after-hours share 7d is above
                             baseline); or the 7d value CRITICAL-high confirmed by its 24h
                             value CRITICAL-high on 2 days within the last 5 workdays; or
                             the 7d value anomalous-high while ``distinct_collaborators`` 7d is
                             below baseline and ``active_days`` 7d is not (days away mean fewer
                             people met), persisting (6 of 8 workdays; no early confirmation)
``rework_loop``              ``build_failure_rate`` / ``test_failure_rate`` / ``rework_ratio``
                             anomalous-high (24h or 7d, see ``RULE_WINDOWS``), persisting;
                             ``rework_ratio`` only while ``commit_count`` of its window is not
                             below baseline (fewer commits raise it with no more failures); a
                             7d trigger also on 3 workdays of the last 5 on which both 7d
                             failure rates are > 2 stds above baseline (``_rework_corroborated``)
``context_thrash``           ``context_switch_rate`` anomalous-high (24h / 7d), persisting,
                             while ``pr_throughput`` 7d is not above baseline (no usable
                             baseline counts as "not above"); the 7d value only with its 24h
                             value anomalous on a day of the last 8 workdays, on 3 days (and
                             3 within the last 5 for the early confirmation) for a subject
                             with no PR output to guard by (``_thrash_seen_daily``)
``engagement_drop``          ``active_days`` (7d) or ``focus_session_avg_minutes`` (24h, 7d)
                             anomalous-low over a clean window (no leave, quiet or incomplete
                             day; for the focus average, an intensive feature, only no
                             incomplete day), persisting; fewer active days on any workday, a
                             shorter focus on a day present (by the 24h value or early
                             confirmation only with active days or events below baseline,
                             ``_fewer_at_work``). Also at once, on a day present,
                             when the fewer active days are scattered days off (>= 2 separate
                             runs of workdays away in the 7 days; a holiday without events
                             counted at the person's rate of presence on the other workdays),
                             fewer judged by ``active_days`` 7d or, with days off worked in
                             the 7 days, by the workdays at work in the last 5 against the
                             person's usual share, active days and events 7d below baseline
                             too (weekend days worked do not hide workdays away)
``guardrail_overrides``      ``override_count`` anomalous-high (24h / 7d), persisting
``mentoring_potential``      actor scope: ``reviews_given`` 28d > 0, >= the nearest-rank p90
                             and > the median of the peer group (team members of the actor's
                             type if >= min_team_size, else cohort; complete 28-day windows
                             only; >= min_team_size members) on each of the last 14 days (two
                             consecutive weeks); the median guard keeps a team where everyone
                             reviews equally from flagging everyone
``pair_work_candidate``      ``rework_loop`` or ``context_thrash`` fires (whether or not those
                             classes are enabled) and ``distinct_collaborators`` 7d is below
                             baseline
``agent_usage_optimisation`` ``llm_failure_rate`` anomalous-high (24h / 7d), persisting, or
                             (actor scope) ``llm_requests_per_work_item`` 7d strictly outside
                             the peer group's nearest-rank p10..p90 on each of the last 14 days
``after_hours_activity``     ``after_hours_ratio`` 7d anomalous-high (against the person's own
                             baseline), persisting, and above 0.3, over a clean window
============================ =================================================================

Severity: risks take the highest severity of their triggering anomalies; opportunities and
informational signals are INFO. Score (0-100): risks ``min(100, 20 * max |z|)`` (WARN at z=2.5
scores 50, z >= 5 scores 100); percentile rules 90 at the peer p90 rising to 100 at twice
the distance; ``after_hours_activity`` 100 x the share. Confidence: mean over the triggers of
baseline confidence x window completeness (window completeness alone for fixed thresholds).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ubi.analytics.activity import COUNTER_INDEX
from ubi.analytics.explain import (
    describe_deviation,
    fmt_number,
    fmt_value,
)
from ubi.analytics.features import rolling_sum
from ubi.analytics.presence import (
    DROP_ABSENCE_RUNS,
    DROP_SPAN_WORKDAYS,
    Scattered,
    leave_days,
    quiet_days,
    scattered_absences,
)
from ubi.analytics.rule_inputs import HitInfo, RuleInputs
from ubi.analytics.rule_triggers import (
    PERSIST_MIN_HITS,
    PERSIST_WORKDAYS,
    RULE_TRIGGERS,
    Persistent,
    Trigger,
    above_baseline,
    below_baseline,
    drop_allowed,
    fired_days,
    from_persistent,
    from_triggers,
    gate,
    make_candidate,
    persistence_rule,
    persistent,
    persistent_triggers,
    risk_score,
    signal_evidence,
    span_counts,
    span_start,
    trigger_allowed,
    trigger_masks,
)
from ubi.analytics.signal_lifecycle import SignalCandidate
from ubi.analytics.taxonomy import (
    FEATURE_INDEX,
    SIGNAL_CLASS_BY_NAME,
    SIGNAL_CLASSES,
    WINDOWS,
)
from ubi.analytics.tenant_config import TenantConfig

__all__ = [
    "LOOKBACK_DAYS", "RULE_TRIGGERS", "evaluate_rules", "leave_days", "quiet_days",
]

#: Days before the first evaluated day that the rules read (5 workdays, 14 days of mentoring).
LOOKBACK_DAYS = 21
BURNOUT_WORKDAYS = PERSIST_WORKDAYS
BURNOUT_MIN_HITS = PERSIST_MIN_HITS
MENTORING_DAYS = 14
#: Days a position among peers must hold before a percentile rule fires (two weeks).
PEER_POSITION_DAYS = MENTORING_DAYS
AFTER_HOURS_SHARE = 0.3
#: Features compared with a threshold or with peers rather than with an anomaly.
PERCENTILE_TRIGGERS: dict[str, tuple[str, str]] = {
    "mentoring_potential": ("reviews_given", "28d"),
    "agent_usage_optimisation": ("llm_requests_per_work_item", "7d"),
}
#: Supporting features the rules compare with their baselines (not triggers).
#: (``commit_count`` and ``event_count`` only qualify a trigger, see ``_rework_masks`` and
#: ``_fewer_at_work``: a volume figure never raises a signal by itself.)
CONTEXT_FEATURES: dict[str, tuple[str, ...]] = {
    "24h": ("commit_count",),
    "7d": ("pr_throughput", "distinct_collaborators", "after_hours_ratio",
           "llm_requests_per_work_item", "active_days", "commit_count", "event_count",
           "build_failure_rate", "test_failure_rate"),
    "28d": ("reviews_given",),
}


#: A ratio's trigger discounted when its denominator fell: (ratio, denominator feature).
RATIO_DENOMINATORS: dict[str, str] = {"rework_ratio": "commit_count"}


def _rework_masks(inputs: RuleInputs, config: TenantConfig
                  ) -> dict[tuple[str, str], np.ndarray]:
    """``rework_loop``'s trigger masks; a higher ``rework_ratio`` (failed builds and tests per
    commit) counts only while ``commit_count`` of the same window is not below its baseline.
    Fewer commits (days away, a drop, a week of reviews) raise the ratio with no more failures
    and no rework: found on the generated tenants, where a drop plant's fewer commits and an
    agent's quiet week raised ``rework_loop``. The failure rates themselves are judged per
    build and per test run, so a rework loop still shows through them."""
    masks = trigger_masks(inputs, "rework_loop", config)
    for (feature, w), m in masks.items():
        if feature in RATIO_DENOMINATORS:
            masks[(feature, w)] = m & ~below_baseline(inputs, RATIO_DENOMINATORS[feature], w)
    return masks


#: ``rework_loop``'s two failure rates, of independent runs (builds, test runs): each
#: corroborates the other (``_rework_corroborated``).
REWORK_RATES: tuple[str, str] = ("build_failure_rate", "test_failure_rate")
#: How far above its baseline (in baseline stds) a failure rate corroborates: at 1.5 the
#: generated tenants got 6 false rework loops more per 16 runs for one plant fewer missed.
CORROBORATING_STDS = 2.0
#: Workdays within the last ``PERSIST_WORKDAYS`` on which the corroborated 7d evidence holds:
#: at 2, two false rework loops more on 12 runs of unseen seeds for 2 plants more found on the
#: 35 runs of the tuned seeds.
CORROBORATED_DAYS = 3


def _well_above(inputs: RuleInputs, feature: str, window: str) -> np.ndarray:
    """[S, L] more than ``CORROBORATING_STDS`` baseline stds above the baseline mean. A
    baseline without spread (no failure in weeks) says nothing about how far is unusual:
    never "well above" (one failed test would otherwise be)."""
    value, mean, std, usable = inputs.windows[window].context[feature]
    with np.errstate(invalid="ignore"):
        return usable & (std > 0) & (value > mean + CORROBORATING_STDS * np.nan_to_num(std))


def _rework_corroborated(inputs: RuleInputs, p: Persistent) -> Persistent:
    """``rework_loop``'s 7d triggers also persist when corroborated: anomalous on a workday
    while both 7d failure rates (builds and test runs) are well above their baselines
    (``_well_above``), on ``CORROBORATED_DAYS`` workdays within the last ``PERSIST_WORKDAYS``.

    For someone with a few builds a day each rate is a small sample, so a rework loop (both
    rates up) seldom makes one of them anomalous on 6 of 8 workdays, nor its 24h value
    anomalous on two days (the early confirmation): on the generated tenants ending on other
    days than the one tuned on, the rework plants missed were such people (seed 7's dev-004:
    1-2 builds a day; its 7d triggers anomalous on 3 workdays of the plant), and their
    baselines learn the plant while they wait. Both independent rates well above baseline
    together, on several days, is what one unlucky day of builds does not make."""
    if "7d" not in inputs.windows:
        return p
    both = np.logical_and.reduce([_well_above(inputs, f, "7d") for f in REWORK_RATES])
    for key, m in p.masks.items():
        if key[1] != "7d":
            continue
        joint = m & both & inputs.workday[None, :]
        ok = joint & (span_counts(joint, inputs.workday, PERSIST_WORKDAYS) >= CORROBORATED_DAYS)
        p.corroborated[key] = ok & ~p.persists[key]
        p.persists[key] = p.persists[key] | ok
    p.fired = np.logical_or.reduce(list(p.persists.values()))
    p.corroboration_note = (f"with both failure rates 7d more than {CORROBORATING_STDS:g} "
                            f"stds above baseline on {CORROBORATED_DAYS} of the last "
                            f"{PERSIST_WORKDAYS} workdays")
    return p


#: Daily hits a ``context_thrash`` 7d trigger needs on a subject whose output the rule cannot
#: read (``_output_known``): within the last 8 workdays for its own persistence, within the
#: last 5 for the early confirmation (``_thrash_seen_daily``).
THRASH_UNGUARDED_HITS = 3


def _output_known(inputs: RuleInputs) -> np.ndarray:
    """[S, L] the subject's ``pr_throughput`` 7d has a usable baseline above 0: the rule's
    "not more PRs" guard says something about the subject."""
    rw = inputs.windows.get("7d")
    if rw is None or "pr_throughput" not in rw.context:
        return np.zeros(inputs.present.shape, dtype=bool)
    _, mean, _, usable = rw.context["pr_throughput"]
    with np.errstate(invalid="ignore"):
        return usable & (mean > 0)


def _thrash_seen_daily(inputs: RuleInputs, p: Persistent) -> Persistent:
    """``context_thrash``'s 7d trigger counts only while its 24h value was anomalous on at
    least one day within the span of the 7d persistence (the last 8 workdays). A switch rate
    per active hour that no single day shows high is a shift of hours, not thrash: on the
    generated tenants, a week of light days and the return to ordinary hours after weeks of
    evening work (a baseline learnt on the longer days) raised it; every planted thrash shows
    on its days too.

    Where the rule cannot read the subject's output (``_output_known``: no PRs merged of its
    own, as for the AI agents, whose PRs their reviewers merge), the "not more PRs" guard says
    nothing, and the switches themselves must show on more days: ``THRASH_UNGUARDED_HITS``
    daily hits, for the 7d value's own persistence (within the last 8 workdays) and for its
    early confirmation (within the last 5). An agent's few switches a day spread over many
    active hours make a 7-day rate that drifts for weeks with one day anomalous (seed 103's
    agent-05: 13-15 switches a week, then 26-31 for four weeks, no day but one high), and an
    agent's two busy days in a row make the two daily hits of an early confirmation (seed
    107's agent-03); on the unseen generated tenants every false thrash on an agent came one
    of these two ways. A real thrash, four times the switches, shows on most days, agents'
    too."""
    key, daily = ("context_switch_rate", "7d"), p.masks.get(("context_switch_rate", "24h"))
    if key not in p.persists or daily is None:
        return p
    _, last, _ = persistence_rule(WINDOWS[key[1]])
    known = _output_known(inputs)
    seen = span_counts(daily, inputs.workday, last)
    ok = p.persists[key] & (seen >= np.where(known, 1, THRASH_UNGUARDED_HITS))
    early = p.early.get(key)
    if early is not None:
        weak = (early > 0) & (early < THRASH_UNGUARDED_HITS) & ~known
        ok &= ~weak
        p.early[key] = np.where(weak, 0, early)
    p.persists[key] = ok
    p.fired = np.logical_or.reduce(list(p.persists.values()))
    return p


def _critical(inputs: RuleInputs, masks: dict[tuple[str, str], np.ndarray]
              ) -> dict[tuple[str, str], np.ndarray]:
    """The masks' days that are anomalous at CRITICAL severity (either direction)."""
    return {(f, w): m & (np.abs(inputs.windows[w].severity[:, FEATURE_INDEX[f], :]) >= 2)
            for (f, w), m in masks.items()}


def _burnout(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    # (a) daily after-hours / late-night values anomalous-high on 3 days of the last 5
    # workdays' span (weekend work included), as SPEC 5.5 states it;
    # A late-night day counts only while the 7-day after-hours share is above the person's
    # baseline: late events are part of the after-hours work, and a few of them on three days
    # of a week whose share is the person's usual (a late fix now and then) are not more work
    # out of hours. Two of the three false burnouts on fresh generated seeds came that way.
    masks_a = trigger_masks(inputs, "burnout_risk", config, windows=("24h",))
    late = ("late_night_events", "24h")
    if late in masks_a:
        masks_a[late] = masks_a[late] & above_baseline(inputs, "after_hours_ratio", "7d")
    a = persistent(inputs, masks_a)
    # (b) the 7d value anomalous-high while fewer collaborators than usual, persisting too.
    # Not confirmed early by two late days: the daily path (a) is SPEC 5.5's "3 of the last 5
    # workdays", and two late evenings in a week with a 7-day value above baseline are not
    # (on the generated tenants every false burnout came that way).
    # Fewer collaborators counts only while the person was not away more than usual (active
    # days 7d not below baseline): days away mean fewer people met, and a few days present
    # make a noisy after-hours share. On the generated tenants ending on other days, three of
    # the five false burnouts by this path were a drop plant's or two sick days' weeks.
    collab_low = (below_baseline(inputs, "distinct_collaborators", "7d")
                  & ~below_baseline(inputs, "active_days", "7d"))
    masks_7d = trigger_masks(inputs, "burnout_risk", config, windows=("7d",))
    b = persistent(inputs, {k: m & collab_low for k, m in masks_7d.items()})
    # (c) a strong start confirms sooner: the 7d value CRITICAL-high that workday while its
    # 24h counterpart (path (a)'s mask) was CRITICAL-high on 2 days within the last 5
    # workdays' span. A change that starts on a Thursday or Friday otherwise waits for the
    # Monday (the third daily hit: weekend evenings have a weekend baseline, where every
    # event is after hours); two WARN evenings and a 7d value above baseline are not this
    # (every false burnout of the generated tenants came from that, see (b)).
    c = persistent(inputs, _critical(inputs, masks_7d), "high", early_only=True,
                   daily=_critical(inputs, masks_a))
    out = []
    for s, lday in fired_days(gate(inputs, a.fired | b.fired | c.fired), inputs):
        triggers = persistent_triggers(inputs, a, s, lday) if a.fired[s, lday] else []
        if c.fired[s, lday]:
            for t in persistent_triggers(inputs, c, s, lday):
                if not any(x.feature == t.feature and x.window == t.window for x in triggers):
                    t.note = t.note and t.note.replace("anomalous", "critically high")
                    triggers.append(t)
        context: list[tuple[str, str]] = []
        if b.fired[s, lday]:
            for t in persistent_triggers(inputs, b, s, lday):
                if not any(x.feature == t.feature and x.window == t.window for x in triggers):
                    triggers.append(t)
            context.append(("distinct_collaborators", "7d"))
        out.append(from_triggers(inputs, "burnout_risk", s, lday, triggers, context))
    return out


def evaluate_rules(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    """Signal candidates of every enabled rule for the evaluated days of one scope."""
    enabled = {c.name for c in SIGNAL_CLASSES if config.signal_class_enabled(c.name)}
    out: list[SignalCandidate] = []
    n_s = inputs.present.shape[0]
    if n_s == 0:
        return out
    has_7d = "7d" in inputs.windows

    if "burnout_risk" in enabled:
        out += _burnout(inputs, config)

    rework = _rework_corroborated(inputs, persistent(inputs, _rework_masks(inputs, config),
                                                     "high"))
    thrash = _thrash_seen_daily(inputs, persistent(
        inputs, trigger_masks(inputs, "context_thrash", config), "high"))
    pr_above = above_baseline(inputs, "pr_throughput", "7d")
    thrash_fired = thrash.fired & ~pr_above
    thrash_ctx = [("pr_throughput", "7d")] if has_7d else []
    if "rework_loop" in enabled:
        out += from_persistent(inputs, "rework_loop", rework, rework.fired)
    if "context_thrash" in enabled:
        out += from_persistent(inputs, "context_thrash", thrash, thrash_fired, thrash_ctx)

    if "engagement_drop" in enabled:
        out += _engagement_drop(inputs, config)

    if "guardrail_overrides" in enabled:
        guard = persistent(inputs, trigger_masks(inputs, "guardrail_overrides", config),
                            "high")
        out += from_persistent(inputs, "guardrail_overrides", guard, guard.fired)

    if "pair_work_candidate" in enabled and has_7d:
        collab_low = below_baseline(inputs, "distinct_collaborators", "7d")
        rework_on, thrash_on = rework.fired, thrash_fired
        fired = (rework_on | thrash_on) & collab_low
        for s, lday in fired_days(gate(inputs, fired), inputs):
            triggers = (persistent_triggers(inputs, rework, s, lday)
                        if rework_on[s, lday] else [])
            if thrash_on[s, lday]:
                triggers += persistent_triggers(inputs, thrash, s, lday)
            out.append(from_triggers(inputs, "pair_work_candidate", s, lday, triggers,
                                      [("distinct_collaborators", "7d")], risk=False))

    if "mentoring_potential" in enabled:
        out += _mentoring(inputs, config)
    if "agent_usage_optimisation" in enabled:
        out += _agent_usage(inputs, config)
    if "after_hours_activity" in enabled:
        out += _after_hours(inputs, config)
    if inputs.subject_types is None:
        return out
    types = dict(zip(inputs.subject_ids, inputs.subject_types, strict=True))
    return [c for c in out
            if SIGNAL_CLASS_BY_NAME[c.signal_class].applies_to(types[c.subject_id])]


def _engagement_drop(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    """Deviations over clean windows only (no leave, quiet or incomplete day; SPEC §5.5:
    absence is not disengagement), persisting; fewer active days is judged on every workday,
    the days without events included (such a day is evidence for the rule, not missing data),
    and also fires, on a day with events, as soon as it is made of scattered days off
    (``presence.scattered_absences``). A shorter focus session can only be seen on a day with
    events."""
    drop = persistent(inputs, trigger_masks(inputs, "engagement_drop", config,
                                              allowed=drop_allowed(inputs)), "low")
    scattered = (scattered_absences(inputs, config) if trigger_allowed("active_days", config)
                 else None)
    # A shorter average focus session alone is a drop when its 7-day value persisted on its
    # own (6 of the last 8 workdays); the quicker paths (24h on 3 of 5 workdays, a 7-day value
    # confirmed early by two short days) need fewer days at work or fewer events than usual
    # as well (``_fewer_at_work``). The average of a few sessions moves a lot: at its
    # 10 %-of-mean noise floor, one short week made most of the false drops on the generated
    # tenants, all through the quicker paths, and a context thrash shortens sessions too.
    fewer = _fewer_at_work(inputs, scattered)
    for key in drop.persists:
        if key[0] == "focus_session_avg_minutes":
            own = (drop.persists[key] & (drop.early[key] == 0) if key in drop.early
                   and WINDOWS[key[1]] > 1 else np.zeros_like(fewer))
            drop.persists[key] = drop.persists[key] & (fewer | own)
    on_day = np.zeros(inputs.present.shape, dtype=bool)
    for (feature, _w), ok in drop.persists.items():
        on_day |= ok & (inputs.present if feature != "active_days"
                        else inputs.present | inputs.workday[None, :])
    if scattered is not None:
        on_day |= scattered.fired
    out = []
    for s, lday in fired_days(gate(inputs, on_day), inputs):
        triggers = persistent_triggers(inputs, drop, s, lday)
        by_workdays = (scattered is not None and scattered.by_workdays is not None
                       and bool(scattered.by_workdays[s, lday])
                       and not any(t.feature == "active_days" for t in triggers))
        if scattered is not None and scattered.fired[s, lday] and not any(
                t.feature == "active_days" for t in triggers):
            _, mean, std, _ = inputs.windows["7d"].context["active_days"]
            v = float(scattered.value[s, lday])
            m, sd = float(mean[s, lday]), float(std[s, lday])
            min_std = float(config.baseline_algorithm["min_std"])
            z = (v - m) / max(sd, min_std)
            if by_workdays and scattered.z_workdays is not None:
                z = float(scattered.z_workdays[s, lday])  # the days at work on workdays
            triggers.append(Trigger(
                "active_days", "7d", lday,
                HitInfo(v, m, sd, z, float(inputs.windows["7d"].window_confidence[s, lday])),
                severity=abs(int(scattered.severity[s, lday]))))
        if not triggers:
            continue
        cand = from_triggers(inputs, "engagement_drop", s, lday, triggers)
        if any(t.feature == "active_days" for t in triggers):
            cand = replace(cand, reason=_drop_reason(inputs, scattered, s, lday, cand.reason,
                                                     by_workdays))
        out.append(cand)
    return out


def _drop_reason(inputs: RuleInputs, scattered: Scattered | None, s: int, lday: int,
                 reason: str, by_workdays: bool) -> str:
    """The count of workdays at work first: ``active on 6 of the last 10 workdays, away on 2
    separate occasions in the last 7 days; ...``. Fired by the workdays at work (weekend days
    worked kept ``active_days`` 7d within its baseline), the count is over the last 5
    workdays against the person's usual, and the 7-day count says how many days off were
    worked: ``active on 2 of the last 5 workdays, usually 5 ± 1, ...; active_days 7d at 4
    days, 2 of them days off worked (baseline 6.1 ± 1)``."""
    last = 5 if by_workdays else DROP_SPAN_WORKDAYS
    start = int(span_start(inputs.workday, inputs.present.shape[1], last)[lday])
    span = inputs.workday[start:lday + 1]
    at_work, so_far = inputs.attendance()
    active = int((at_work[s, start:lday] & span[:-1]).sum() + (so_far[s, lday] & span[-1]))
    n = int(span.sum())
    text = f"active on {active} of the last {n} workdays"
    usual = [] if scattered is None or not by_workdays else [
        wp for wp in scattered.workdays if wp.last == last and wp.usable[s, lday]]
    if usual and usual[0].counted[s, lday] > 0:
        wp = usual[0]
        share = float(wp.mean[s, lday]) / float(wp.counted[s, lday])
        spread = float(wp.std[s, lday]) * np.sqrt(n / float(wp.counted[s, lday]))
        text += f", usually {fmt_number(n * share)} ± {fmt_number(spread)}"
    away = 0 if scattered is None else int(scattered.runs[s, lday])
    if away >= DROP_ABSENCE_RUNS:
        text += f", away on {away} separate occasions in the last 7 days"
    if by_workdays and scattered is not None and scattered.off_worked is not None:
        _, mean, std, _ = inputs.windows["7d"].context["active_days"]
        value = float(scattered.value[s, lday])
        off = round(float(scattered.off_worked[s, lday]))
        worked = (f", {off} of them {'a day' if off == 1 else 'days'} off worked" if off
                  else "")
        reason = (f"active_days 7d at {fmt_value('active_days', value)}{worked} (baseline "
                  f"{fmt_number(float(mean[s, lday]))} ± {fmt_number(float(std[s, lday]))})")
    return f"{text}; {reason}"


def _fewer_at_work(inputs: RuleInputs, scattered: Scattered | None) -> np.ndarray:
    """[S, L] fewer days at work or fewer events than usual over the last 7 days (below
    baseline: more than one std under the mean), never over a window with leave (SPEC §5.5:
    the return from leave is not compared against the empty week). Days as the scattered-
    absence rule reads them, a holiday without events counted at the person's own rate of
    presence on the window's other workdays (one fell inside most
    drops of the generated tenants); events only over a clean window (no leave, quiet or
    incomplete day), since a holiday week has fewer. ``event_count`` only qualifies the focus
    trigger here: a volume figure never raises a signal by itself."""
    rw = inputs.windows.get("7d")
    fewer = np.zeros(inputs.present.shape, dtype=bool)
    if rw is None:
        return fewer
    if "event_count" in rw.context:
        fewer |= below_baseline(inputs, "event_count", "7d") & rw.drop_ok
    if scattered is not None:
        _, mean, std, usable = rw.context["active_days"]
        with np.errstate(invalid="ignore"):
            fewer |= usable & (scattered.value < mean - np.nan_to_num(std))
    else:
        fewer |= below_baseline(inputs, "active_days", "7d")
    if inputs.leave is not None:
        fewer &= rolling_sum(inputs.leave.astype(np.float64), WINDOWS["7d"]) == 0
    return fewer


def _mentoring(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    feature, w = PERCENTILE_TRIGGERS["mentoring_potential"]
    peers, rw = inputs.peers, inputs.windows.get(w)
    if peers is None or rw is None or not trigger_allowed(feature, config):
        return []
    value = rw.context[feature][0]
    p90 = peers.reviews_p90[peers.group]
    enough = peers.reviews_count[peers.group] >= config.min_team_size
    with np.errstate(invalid="ignore"):
        ok = enough & (value > 0) & (value >= p90)
        if peers.reviews_member is not None:
            ok &= peers.reviews_member
        if peers.reviews_p50 is not None:
            # Ties at the top are no signal: when everyone reviews as much, nobody stands out.
            ok &= value > peers.reviews_p50[peers.group]
    fired = rolling_sum(ok.astype(np.float64), MENTORING_DAYS) >= MENTORING_DAYS
    out = []
    for s, lday in fired_days(gate(inputs, fired), inputs):
        v, p = float(value[s, lday]), float(p90[s, lday])
        label = peers.labels[int(peers.group[s])]
        reason = (f"{feature} {w} at {fmt_value(feature, v)}, at or above the p90 of "
                  f"{label} ({fmt_number(p)}) on each of the last {MENTORING_DAYS} days")
        evidence = signal_evidence(inputs, s, lday, [], [(feature, w)])
        evidence["peer_group"] = {"label": label,
                                  "members_with_value": int(peers.reviews_count[
                                      peers.group[s], lday]),
                                  "p90": round(p, 4)}
        out.append(make_candidate(
            inputs, "mentoring_potential", s, lday, severity="INFO",
            score=90.0 + 10.0 * min(1.0, (v - p) / max(p, 1.0)),
            confidence=float(rw.window_confidence[s, lday]), reason=reason,
            evidence=evidence, triggers=[f"{feature}.{w}"], extra_snapshot=[(feature, w)]))
    return out


def _agent_usage(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    n_s, n_l = inputs.present.shape
    failures = persistent(inputs, trigger_masks(inputs, "agent_usage_optimisation", config),
                           "high")
    fired_a = failures.fired
    feature, w = PERCENTILE_TRIGGERS["agent_usage_optimisation"]
    peers, rw = inputs.peers, inputs.windows.get(w)
    fired_b = np.zeros((n_s, n_l), dtype=bool)
    lo = hi = None
    if peers is not None and rw is not None and trigger_allowed(feature, config):
        value = rw.context[feature][0]
        lo, hi = peers.rpwi_p10[peers.group], peers.rpwi_p90[peers.group]
        enough = peers.rpwi_count[peers.group] >= config.min_team_size
        with np.errstate(invalid="ignore"):
            outside = enough & ~np.isnan(value) & ((value < lo) | (value > hi))
        if peers.rpwi_member is not None:
            outside &= peers.rpwi_member
        # Like mentoring: a position among peers counts when it held on each of the last two
        # weeks; the extremes of a group change places from day to day.
        fired_b = rolling_sum(outside.astype(np.float64), PEER_POSITION_DAYS) \
            >= PEER_POSITION_DAYS
    out = []
    for s, lday in fired_days(gate(inputs, fired_a | fired_b), inputs):
        triggers = (persistent_triggers(inputs, failures, s, lday)
                    if fired_a[s, lday] else [])
        parts = [describe_deviation(t.feature, t.window, t.info.value, t.info.mean,
                                    t.info.std, t.info.z) for t in triggers]
        score = risk_score(triggers) if triggers else 0.0
        conf = [t.info.confidence for t in triggers]
        extra = [(t.feature, t.window) for t in triggers]
        context: list[tuple[str, str]] = []
        if fired_b[s, lday] and rw is not None and lo is not None and hi is not None:
            v, a, b = float(rw.context[feature][0][s, lday]), float(lo[s, lday]), \
                float(hi[s, lday])
            label = peers.labels[int(peers.group[s])] if peers is not None else ""
            side = "above" if v > b else "below"
            parts.append(f"{feature} {w} at {fmt_value(feature, v)}, {side} the p10-p90 range "
                         f"of {label} ({fmt_number(a)}-{fmt_number(b)}) on each of the last "
                         f"{PEER_POSITION_DAYS} days")
            dist = (v - b) if v > b else (a - v)
            score = max(score, 90.0 + 10.0 * min(1.0, dist / max(b - a, 1e-9)))
            conf.append(float(rw.window_confidence[s, lday]))
            extra.append((feature, w))
            context.append((feature, w))
        evidence = signal_evidence(inputs, s, lday, triggers, context)
        out.append(make_candidate(
            inputs, "agent_usage_optimisation", s, lday, severity="INFO", score=score,
            confidence=float(np.mean(conf)), reason="; ".join(parts), evidence=evidence,
            triggers=[f"{f}.{ww}" for f, ww in extra], extra_snapshot=extra))
    return out


def _after_hours(inputs: RuleInputs, config: TenantConfig) -> list[SignalCandidate]:
    """A change, not a level (SPEC §5.5): the 7-day after-hours share anomalous-high against
    the person's own baseline, persisting as any 7-day trigger, and above 0.3 that day.
    Someone who always works evenings has a baseline that says so and is not told every
    week; the signal resolves when the share is back within the person's normal."""
    masks = trigger_masks(inputs, "after_hours_activity", config)
    if not masks:
        return []
    [(key, rising)] = masks.items()
    feature, w = key
    rw = inputs.windows[w]
    value = rw.context[feature][0]
    with np.errstate(invalid="ignore"):
        # Over an ordinary week only: a week of leave or a holiday leaves a handful of
        # evening or weekend events whose share says nothing about working patterns.
        level = (value > AFTER_HOURS_SHARE) & rw.drop_ok
    p = persistent(inputs, {key: rising & level})
    out = []
    for s, lday in fired_days(gate(inputs, p.fired & level), inputs):
        [t] = persistent_triggers(inputs, p, s, lday)
        first = max(0, lday - WINDOWS[w] + 1)
        counters = inputs.counters[s, first:lday + 1]
        after = int(counters[:, COUNTER_INDEX["after_hours"]].sum())
        total = int(counters[:, COUNTER_INDEX["event_count"]].sum())
        reason = (describe_deviation(feature, w, t.info.value, t.info.mean, t.info.std,
                                     t.info.z, hits=t.hits, of=t.of)
                  + f"; {after} of {total} events of the last {WINDOWS[w]} days outside "
                    f"working hours (above {AFTER_HOURS_SHARE})")
        out.append(make_candidate(
            inputs, "after_hours_activity", s, lday, severity="INFO",
            score=100.0 * float(value[s, lday]), confidence=t.info.confidence, reason=reason,
            evidence=signal_evidence(inputs, s, lday, [t], []),
            triggers=[f"{feature}.{w}"], extra_snapshot=[(feature, w)]))
    return out
