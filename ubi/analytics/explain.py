"""Reasons a person can read, and evidence that carries only counts and ids (SPEC §5.6).

Evidence never holds a raw property: only feature ids, baseline ids, feature values and event
summaries (counts by canonical event type and the time span they cover). Its size decides
whether it is embedded (< 1 KB) or handed to the receipt store (ERIS) by the caller.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ubi.analytics.calendar import day_from_number
from ubi.analytics.taxonomy import CANONICAL_EVENT_TYPES, FEATURE_BY_NAME, ROLLUP_COUNTER_COLUMNS

#: Evidence smaller than this many bytes (canonical JSON, UTF-8) is embedded in the record.
EVIDENCE_EMBED_LIMIT = 1024

_TYPE_COLUMNS = [(t, ROLLUP_COUNTER_COLUMNS.index(f"n_{t}")) for t in CANONICAL_EVENT_TYPES]


def fmt_number(v: float) -> str:
    """Short human form: 123, 75.3, 6.2, 0.45 (trailing zeros dropped); n/a for NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(float(v))
    text = f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 1 else f"{v:.2f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


#: Units whose singular is not the plural less its final "s".
_SINGULAR_UNITS = {"PRs merged": "PR merged", "people": "person",
                   "requests/item": "request/item"}


def _unit_for(unit: str, number: str) -> str:
    """``unit`` as it reads after ``number``: singular for exactly one ("1 person")."""
    if number not in ("1", "-1"):
        return unit
    if unit in _SINGULAR_UNITS:
        return _SINGULAR_UNITS[unit]
    return unit[:-1] if unit.endswith("s") else unit


def fmt_value(feature: str, v: float) -> str:
    """A value with its unit: ``6.2/h``, ``42 min``, ``0.45``, ``1 PR merged``."""
    unit = FEATURE_BY_NAME[feature].unit
    number = fmt_number(v)
    if not unit:
        return number
    return f"{number}{unit}" if unit.startswith("/") else f"{number} {_unit_for(unit, number)}"


def describe_deviation(feature: str, window: str, value: float, mean: float, std: float,
                       z: float, *, hits: int | None = None, of: int | None = None,
                       days_off: int = 0) -> str:
    """``context_switch_rate 7d rose to 6.2/h (baseline 2.1 ± 0.8, z=5.1) on 4 of the last 5
    workdays``: anomalous on ``hits`` days within the last ``of`` workdays, ``days_off`` of
    them weekend days or holidays (then ``on 3 days within the last 5 workdays (2 of them days
    off)``)."""
    verb = "rose to" if z >= 0 else "fell to"
    text = (f"{feature} {window} {verb} {fmt_value(feature, value)} "
            f"(baseline {fmt_number(mean)} ± {fmt_number(std)}, z={z:.1f})")
    if hits is not None and of is not None:
        if days_off:
            text += (f" on {hits} {'day' if hits == 1 else 'days'} within the last {of} "
                     f"workdays ({days_off} of them {'a day' if days_off == 1 else 'days'} off)")
        else:
            text += f" on {hits} of the last {of} workdays"
    return text


def describe_context(feature: str, window: str, value: float, mean: float, std: float,
                     usable: bool = True) -> str:
    """A supporting feature in one phrase: ``pr_throughput 7d flat`` / ``... below baseline``."""
    if not usable or any(math.isnan(x) for x in (value, mean)):
        return f"{feature} {window} {fmt_value(feature, value)} (no baseline yet)"
    band = std if std > 0 else 0.0
    if abs(value - mean) <= band or value == mean:
        return f"{feature} {window} flat"
    where = "above" if value > mean else "below"
    return (f"{feature} {window} {where} baseline ({fmt_value(feature, value)} vs "
            f"{fmt_number(mean)})")


def describe_score(dimension: str, previous: float, current: float,
                   contributors: Sequence[tuple[str, str, float]]) -> str:
    """``flow score 75 → 50 (context_switch_rate 7d z=+3.1, after_hours_ratio 7d z=+1.2)``.

    ``contributors``: (feature, window, health-oriented z) sorted by importance.
    """
    head = (f"{dimension} score {fmt_number(current)}" if math.isnan(previous)
            else f"{dimension} score {fmt_number(previous)} → {fmt_number(current)}")
    if not contributors:
        return head
    parts = ", ".join(f"{f} {w} z={round(z, 1) + 0.0:+.1f}" for f, w, z in contributors)
    return f"{head} ({parts})"


def event_summary(counters: np.ndarray, first_day: int, last_day: int) -> dict[str, Any]:
    """Counts by canonical event type over days ``first_day..last_day`` (UTC day numbers).

    ``counters`` is the [days, C] slice of one subject's rollup counters; zero counts are left
    out. Nothing but counts and dates is read or returned.
    """
    totals = np.asarray(counters, dtype=np.float64).reshape(-1, len(ROLLUP_COUNTER_COLUMNS))
    totals = totals.sum(axis=0)
    counts = {t: round(float(totals[c])) for t, c in _TYPE_COLUMNS if totals[c] > 0}
    return {"counts": counts, "from": day_from_number(first_day).isoformat(),
            "to": day_from_number(last_day).isoformat()}


def build_evidence(feature_ids: Sequence[str], baseline_ids: Sequence[str],
                   summary: Mapping[str, Any] | None,
                   values: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Evidence references of SPEC §5.6: feature ids, baseline ids, an event summary and the
    feature values the reason quotes (rounded)."""
    ev: dict[str, Any] = {"feature_ids": list(dict.fromkeys(feature_ids)),
                          "baseline_ids": list(dict.fromkeys(b for b in baseline_ids if b))}
    if summary:
        ev["event_summary"] = dict(summary)
    if values:
        ev["values"] = {k: (None if math.isnan(v) else round(float(v), 4))
                        for k, v in values.items()}
    return ev


def evidence_size(evidence: Mapping[str, Any]) -> int:
    """Size in bytes of the evidence as canonical JSON (UTF-8)."""
    return len(json.dumps(evidence, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode())


@dataclass(frozen=True)
class EvidencePackage:
    """Evidence with its size; ``embed`` False means: store it with ERIS, keep the handle."""

    evidence: Mapping[str, Any]
    size_bytes: int
    embed: bool


def package_evidence(evidence: Mapping[str, Any]) -> EvidencePackage:
    """Measure evidence against the 1 KB embedding limit."""
    size = evidence_size(evidence)
    return EvidencePackage(evidence, size, size < EVIDENCE_EMBED_LIMIT)
