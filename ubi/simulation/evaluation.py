"""Detection quality over several generated tenants and calendar alignments (issue 18).

One run is ``generate(seed, end_day=...)`` -> ``analyse_envelopes`` -> ``score_signals`` ->
``generated_targets``, the chain of tests/unit/simulation/test_unused_seeds.py (about 25 s).
Every per-seed table before the fifth session ended its tenant on ``DEFAULT_END_DAY``, and the
rules were tuned on that alignment; ``ubi evaluate`` varies the end day too.

``summarise`` is pure: it aggregates the scorecards (``Scorecard.as_dict()``) of several runs
into totals (planted changes missed, unmatched risk signals, signals per clean actor-week,
recall and precision per class summed over runs, the median days to detect over every detected
risk plant, and the runs meeting every target), so it is tested on fabricated scorecards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median
from typing import Any

from ubi.analytics.taxonomy import SIGNAL_CLASS_BY_NAME
from ubi.demo.report import generated_targets


@dataclass(frozen=True)
class Run:
    """One evaluated tenant: its seed, last day and scorecard (``Scorecard.as_dict()``)."""

    seed: int
    end_day: date
    card: dict[str, Any]


def derived_end_days(seed: int, count: int, *, last: date, span: int = 7) -> list[date]:
    """``count`` distinct end days for ``seed`` among the ``span`` days ending on ``last``.

    A fixed stride from a seed-dependent offset: deterministic, spread over the weekdays, and
    different seeds start on different days (no randomness to pin)."""
    if not 1 <= count <= span:
        raise ValueError(f"count must be 1..{span}")
    offset = (seed * 5) % span
    stride = 3 if span % 3 else 1  # 3 is coprime with 7: `count` distinct weekdays
    return sorted(last - timedelta(days=(offset + i * stride) % span) for i in range(count))


def evaluate_run(seed: int, end_day: date, *, actors: int = 60, weeks: int = 8) -> Run:
    """Generate, analyse and score one tenant (the whole chain; about 25 s)."""
    from ubi.simulation.generator import generate
    from ubi.simulation.replay import analyse_envelopes
    from ubi.simulation.scorecard import score_signals

    workload = generate(seed, actors=actors, weeks=weeks, end_day=end_day)
    analysis, actor_of = analyse_envelopes(workload.envelopes, tenant_id=workload.tenant_id)
    card = score_signals(analysis.signals.changes, workload.truth, actor_of=actor_of).as_dict()
    return Run(seed, end_day, card)


def targets_missed(card: dict[str, Any]) -> list[str]:
    """The targets a scorecard misses, in words ("rework_loop recall 0.67", "median 3.5")."""
    targets = generated_targets(card)
    out: list[str] = []
    for cls, t in targets["recall_of_each_planted_class"]["classes"].items():
        if not t["met"]:
            out.append(f"{cls} recall {t['value'] or 0.0:.2f}")
    for cls, t in targets["precision_of_each_risk_class"]["classes"].items():
        if not t["met"]:
            out.append(f"{cls} precision {t['value'] or 0.0:.2f}")
    days = targets["median_days_to_detect"]
    if not days["met"]:
        out.append(f"median days {days['value']}")
    rate = targets["signals_per_clean_actor_week"]
    if not rate["met"]:
        out.append(f"clean-week rate {rate['value']:.3f}")
    if not targets["warmup_signals"]["met"]:
        out.append(f"warm-up signals {targets['warmup_signals']['value']}")
    return out


def _is_risk(signal_class: str) -> bool:
    spec = SIGNAL_CLASS_BY_NAME.get(signal_class)
    return spec is not None and spec.signal_type == "risk"


def _risk_unmatched(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [u for u in card.get("unmatched", ()) if _is_risk(u["signal_class"])]


def run_summary(run: Run) -> dict[str, Any]:
    """One run's line: what it missed, its misses and unmatched risk signals, its figures."""
    card = run.card
    risk_days = [d for cls, sc in card["classes"].items() if _is_risk(cls)
                 for d in sc.get("days_to_detect", [])]
    return {
        "seed": run.seed, "end_day": run.end_day.isoformat(),
        "weekday": run.end_day.strftime("%a"),
        "targets_missed": targets_missed(card),
        "planted": sum(sc["planted"] for sc in card["classes"].values()),
        "missed": list(card.get("missed", ())),
        "unmatched_risk": _risk_unmatched(card),
        "clean_actor_weeks": card["clean_actor_weeks"],
        "signals_on_clean_actor_weeks": card["signals_on_clean_actor_weeks"],
        "median_days_to_detect": float(median(risk_days)) if risk_days else None,
        "days_to_detect": {cls: sorted(sc.get("days_to_detect", []))
                           for cls, sc in sorted(card["classes"].items()) if _is_risk(cls)},
    }


def summarise(runs: Sequence[Run]) -> dict[str, Any]:
    """Totals over runs (see the module docstring); per class, recall and precision are the
    sums over runs (detected / planted, matching / signals), not averages of ratios."""
    planted = detected = 0
    per_class: dict[str, dict[str, int]] = {}
    risk_days: list[int] = []
    clean_weeks = on_clean = unmatched_risk = met = 0
    for run in runs:
        card = run.card
        for cls, sc in card["classes"].items():
            acc = per_class.setdefault(cls, {"planted": 0, "detected": 0, "signals": 0,
                                             "matching_signals": 0})
            for key in acc:
                acc[key] += sc[key]
            planted += sc["planted"]
            detected += sc["detected"]
            if _is_risk(cls):
                risk_days.extend(sc.get("days_to_detect", []))
        clean_weeks += card["clean_actor_weeks"]
        on_clean += card["signals_on_clean_actor_weeks"]
        unmatched_risk += len(_risk_unmatched(card))
        met += not targets_missed(card)
    classes = {
        cls: {**acc,
              "recall": round(acc["detected"] / acc["planted"], 4) if acc["planted"] else None,
              "precision": round(acc["matching_signals"] / acc["signals"], 4)
              if acc["signals"] else None}
        for cls, acc in sorted(per_class.items())}
    return {
        "runs": len(runs),
        "planted": planted,
        "missed": planted - detected,
        "unmatched_risk_signals": unmatched_risk,
        "clean_actor_weeks": clean_weeks,
        "signals_on_clean_actor_weeks": on_clean,
        "signals_per_clean_actor_week": round(on_clean / clean_weeks, 4) if clean_weeks else 0.0,
        "classes": classes,
        "median_days_to_detect": float(median(risk_days)) if risk_days else None,
        "mean_days_to_detect": round(sum(risk_days) / len(risk_days), 2) if risk_days else None,
        "runs_meeting_every_target": met,
    }


def format_report(runs: Iterable[Run], totals: dict[str, Any]) -> list[str]:
    """The human-readable report: one line per run, then the totals."""
    lines = []
    for run in runs:
        s = run_summary(run)
        missed = ", ".join(f"{m['signal_class']} {m['actor_id']} {m['start_day']}"
                           for m in s["missed"]) or "-"
        unmatched = ", ".join(f"{u['signal_class']} {u['actor_id']} {u['first_day']}"
                              for u in s["unmatched_risk"]) or "-"
        lines.append(f"seed {s['seed']:>4} {s['end_day']} {s['weekday']}: "
                     f"{'; '.join(s['targets_missed']) or 'all met'} | "
                     f"clean {s['signals_on_clean_actor_weeks']}/{s['clean_actor_weeks']} | "
                     f"median {s['median_days_to_detect']} | missed: {missed} | "
                     f"unmatched risk: {unmatched}")
    t = totals
    lines.append(f"runs: {t['runs']}; planted changes missed {t['missed']}/{t['planted']}; "
                 f"unmatched risk signals {t['unmatched_risk_signals']}; signals per clean "
                 f"actor-week {t['signals_on_clean_actor_weeks']}/{t['clean_actor_weeks']} = "
                 f"{t['signals_per_clean_actor_week']:.4f}; median days to detect "
                 f"{t['median_days_to_detect']} (mean {t['mean_days_to_detect']}); runs meeting "
                 f"every target {t['runs_meeting_every_target']}/{t['runs']}")
    for cls, c in t["classes"].items():
        rec = "-" if c["recall"] is None else f"{c['recall']:.3f}"
        prec = "-" if c["precision"] is None else f"{c['precision']:.3f}"
        lines.append(f"  {cls:<24} recall {c['detected']}/{c['planted']} = {rec}  "
                     f"precision {c['matching_signals']}/{c['signals']} = {prec}")
    return lines
