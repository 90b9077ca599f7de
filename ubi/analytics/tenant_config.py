"""Per-tenant configuration (SPEC §10): the document, its defaults and its validation.

A config document is JSON; keys left out take the defaults below (nested objects merge key by
key). Validation names the offending field with a JSON path such as
``anomaly_thresholds.flow.warn``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, time
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ubi.analytics.taxonomy import (
    CANONICAL_EVENT_TYPES,
    DIMENSIONS,
    SIGNAL_CLASS_BY_NAME,
    SIGNAL_TYPES,
    WINDOWS,
)

DEFAULT_ALLOWED_PROPERTIES: tuple[str, ...] = (
    "counterpart_actor_id", "work_item_id", "duration_ms", "outcome")

DEFAULT_CONFIG: dict[str, Any] = {
    "enabled_event_categories": list(CANONICAL_EVENT_TYPES),
    "event_type_mapping": {},
    "allowed_properties": {"*": list(DEFAULT_ALLOWED_PROPERTIES)},
    "feature_windows": ["24h", "7d", "28d"],
    "aggregation_thresholds": {"min_team_size": 5},
    "enabled_signal_types": ["risk", "opportunity", "informational"],
    "disabled_signal_classes": [],
    "privacy_settings": {
        "pseudonymise_actor_ids": True,
        "drop_tagged": ["contains_PI", "contains_code_snippet"],
        "actor_level_views": True,
        "prohibit_volume_only_metrics": True,
    },
    "anomaly_thresholds": {"default": {"warn": 2.5, "critical": 3.5}},
    "baseline_algorithm": {"alpha": 0.1, "min_days": 7, "outlier_sigma": 3.0,
                           "history_days": 90, "min_std": 1.0},
    "working_hours": {"start": "09:00", "end": "18:00", "weekdays": [0, 1, 2, 3, 4],
                      "timezone": None},
    "stale_after_seconds": 3600,
    "resolution_hours": 24,
    "late_event_days": 7,
    "holidays": [],
    "retention_days": 365,
}


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` maps each field path to its reason."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1]}")


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in {
                "event_type_mapping", "allowed_properties", "anomaly_thresholds"}:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def validate_config(document: Any) -> dict[str, Any]:
    """Merge ``document`` over the defaults and validate it; raise ``ConfigError``.

    Returns the complete, normalised config.
    """
    errors: dict[str, str] = {}
    if not isinstance(document, dict):
        raise ConfigError({"$": "config must be a JSON object"})
    for key in document:
        if key not in DEFAULT_CONFIG:
            errors[key] = "unknown key"
    for key in ("privacy_settings", "baseline_algorithm", "working_hours",
                "aggregation_thresholds"):
        value = document.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            errors[key] = "must be an object"
            continue
        for inner in value:
            if inner not in DEFAULT_CONFIG[key]:
                errors[f"{key}.{inner}"] = "unknown key"
    if errors:
        raise ConfigError(errors)

    cfg = _deep_merge(DEFAULT_CONFIG, document)

    def check(path: str, ok: bool, reason: str) -> None:
        if not ok and path not in errors:
            errors[path] = reason

    cats = cfg["enabled_event_categories"]
    check("enabled_event_categories", _str_list(cats), "must be a list of event types")
    if _str_list(cats):
        for i, c in enumerate(cats):
            check(f"enabled_event_categories[{i}]", c in CANONICAL_EVENT_TYPES,
                  f"unknown event type {c!r}")
    mapping = cfg["event_type_mapping"]
    check("event_type_mapping", isinstance(mapping, dict), "must be an object")
    if isinstance(mapping, dict):
        for k, v in mapping.items():
            check(f"event_type_mapping.{k}", isinstance(v, str) and v in CANONICAL_EVENT_TYPES,
                  "must map to a canonical event type")
    allowed = cfg["allowed_properties"]
    check("allowed_properties", isinstance(allowed, dict), "must be an object")
    if isinstance(allowed, dict):
        for k, v in allowed.items():
            check(f"allowed_properties.{k}", k == "*" or k in CANONICAL_EVENT_TYPES,
                  "must be '*' or a canonical event type")
            check(f"allowed_properties.{k}", _str_list(v), "must be a list of key names")
    windows = cfg["feature_windows"]
    check("feature_windows", _str_list(windows) and len(windows) > 0
          and all(w in WINDOWS for w in windows), f"must be a non-empty subset of {list(WINDOWS)}")
    agg = cfg["aggregation_thresholds"]
    check("aggregation_thresholds.min_team_size",
          _is_int(agg.get("min_team_size")) and agg["min_team_size"] >= 2,
          "must be an integer of at least 2")
    types = cfg["enabled_signal_types"]
    check("enabled_signal_types", _str_list(types) and all(t in SIGNAL_TYPES for t in types),
          f"must be a subset of {list(SIGNAL_TYPES)}")
    disabled = cfg["disabled_signal_classes"]
    check("disabled_signal_classes",
          _str_list(disabled) and all(c in SIGNAL_CLASS_BY_NAME for c in disabled),
          f"must be a subset of {sorted(SIGNAL_CLASS_BY_NAME)}")
    priv = cfg["privacy_settings"]
    for flag in ("pseudonymise_actor_ids", "actor_level_views", "prohibit_volume_only_metrics"):
        check(f"privacy_settings.{flag}", isinstance(priv.get(flag), bool), "must be a boolean")
    check("privacy_settings.drop_tagged", _str_list(priv.get("drop_tagged")),
          "must be a list of tag names")
    check("privacy_settings.pseudonymise_actor_ids", priv.get("pseudonymise_actor_ids") is True,
          "cannot be turned off: raw actor ids are never stored (SPEC §8)")

    thresholds = cfg["anomaly_thresholds"]
    check("anomaly_thresholds", isinstance(thresholds, dict) and "default" in thresholds,
          "must be an object with a 'default' entry")
    if isinstance(thresholds, dict):
        for dim, value in thresholds.items():
            path = f"anomaly_thresholds.{dim}"
            if dim != "default" and dim not in DIMENSIONS:
                check(path, False, f"must be 'default' or one of {list(DIMENSIONS)}")
                continue
            if not isinstance(value, dict):
                check(path, False, "must be an object with warn and critical")
                continue
            for k in value:
                check(f"{path}.{k}", k in {"warn", "critical"}, "unknown key")
            warn = value.get("warn", thresholds.get("default", {}).get("warn"))
            crit = value.get("critical", thresholds.get("default", {}).get("critical"))
            check(f"{path}.warn", _is_number(warn) and warn > 0, "must be a positive number")
            check(f"{path}.critical", _is_number(crit) and crit > 0, "must be a positive number")
            if _is_number(warn) and _is_number(crit):
                check(f"{path}.warn", warn <= crit, "warn must not exceed critical")
    alg = cfg["baseline_algorithm"]
    alpha = alg.get("alpha")
    check("baseline_algorithm.alpha", _is_number(alpha) and 0 < alpha <= 1,
          "must be in (0, 1]")
    check("baseline_algorithm.min_days", _is_int(alg.get("min_days")) and alg["min_days"] >= 2,
          "must be an integer of at least 2")
    check("baseline_algorithm.outlier_sigma",
          _is_number(alg.get("outlier_sigma")) and alg["outlier_sigma"] > 0,
          "must be a positive number")
    check("baseline_algorithm.history_days",
          _is_int(alg.get("history_days")) and 7 <= alg["history_days"] <= 730,
          "must be an integer between 7 and 730")
    check("baseline_algorithm.min_std", _is_number(alg.get("min_std")) and alg["min_std"] > 0,
          "must be a positive number")
    if _is_int(alg.get("min_days")) and _is_int(alg.get("history_days")):
        check("baseline_algorithm.min_days", alg["min_days"] <= alg["history_days"],
              "must not exceed history_days")
    wh = cfg["working_hours"]
    for k in ("start", "end"):
        check(f"working_hours.{k}", isinstance(wh.get(k), str) and bool(_HHMM.match(wh[k])),
              "must be HH:MM")
    if all(isinstance(wh.get(k), str) and _HHMM.match(wh[k]) for k in ("start", "end")):
        check("working_hours.end", wh["start"] < wh["end"], "must be after start")
    days = wh.get("weekdays")
    check("working_hours.weekdays",
          isinstance(days, list) and all(_is_int(d) and 0 <= d <= 6 for d in days)
          and len(set(days)) == len(days), "must be distinct integers 0 (Monday) to 6")
    tz = wh.get("timezone")
    if tz is not None:
        try:
            ZoneInfo(tz) if isinstance(tz, str) else None
            check("working_hours.timezone", isinstance(tz, str), "must be an IANA name or null")
        except (ZoneInfoNotFoundError, ValueError):
            check("working_hours.timezone", False, f"unknown IANA timezone {tz!r}")
    for key, lo in (("stale_after_seconds", 60), ("resolution_hours", 1),
                    ("late_event_days", 0), ("retention_days", 1)):
        check(key, _is_int(cfg[key]) and cfg[key] >= lo, f"must be an integer of at least {lo}")
    hol = cfg["holidays"]
    check("holidays", isinstance(hol, list), "must be a list of ISO dates")
    if isinstance(hol, list):
        for i, h in enumerate(hol):
            try:
                date.fromisoformat(h)
            except (TypeError, ValueError):
                check(f"holidays[{i}]", False, "must be an ISO date (YYYY-MM-DD)")
    if errors:
        raise ConfigError(errors)
    cfg["holidays"] = sorted(set(cfg["holidays"]))
    return cfg


def canonical_json(value: Any) -> str:
    """Canonical JSON: keys sorted recursively, no whitespace, UTF-8 text (SPEC §13)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(cfg: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(cfg).encode()).hexdigest()


def config_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Leaf-level changes between two configs: ``[{path, old, new}]``."""
    changes: list[dict[str, Any]] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        elif a != b:
            changes.append({"path": path, "old": a, "new": b})

    walk(old or {}, new, "")
    return changes


@dataclass(frozen=True)
class TenantConfig:
    """A validated config with fast accessors for the hot paths."""

    raw: dict[str, Any]
    version: int = 0

    @classmethod
    def default(cls) -> TenantConfig:
        return cls(copy.deepcopy(DEFAULT_CONFIG), 0)

    @classmethod
    def from_document(cls, document: dict[str, Any], version: int = 0) -> TenantConfig:
        return cls(validate_config(document), version)

    @cached_property
    def enabled_event_types(self) -> frozenset[str]:
        return frozenset(self.raw["enabled_event_categories"])

    @cached_property
    def event_type_mapping(self) -> dict[str, str]:
        return dict(self.raw["event_type_mapping"])

    @cached_property
    def allowed_properties(self) -> dict[str, frozenset[str]]:
        """Allowed payload/resource keys per event type (``*`` applies to every type)."""
        common = frozenset(self.raw["allowed_properties"].get("*", []))
        out = {"*": common}
        for k, v in self.raw["allowed_properties"].items():
            if k != "*":
                out[k] = common | frozenset(v)
        return out

    def allowed_keys_for(self, event_type: str) -> frozenset[str]:
        table = self.allowed_properties
        return table.get(event_type, table["*"])

    @cached_property
    def drop_tags(self) -> frozenset[str]:
        return frozenset(self.raw["privacy_settings"]["drop_tagged"])

    @property
    def min_team_size(self) -> int:
        return int(self.raw["aggregation_thresholds"]["min_team_size"])

    @property
    def windows(self) -> tuple[str, ...]:
        return tuple(w for w in WINDOWS if w in self.raw["feature_windows"])

    def thresholds(self, dimension: str) -> tuple[float, float]:
        """(warn, critical) |z| thresholds for a dimension."""
        table = self.raw["anomaly_thresholds"]
        default = table["default"]
        dim = table.get(dimension, {})
        return (float(dim.get("warn", default["warn"])),
                float(dim.get("critical", default["critical"])))

    @property
    def baseline_algorithm(self) -> dict[str, float]:
        return dict(self.raw["baseline_algorithm"])

    @cached_property
    def work_start_minute(self) -> int:
        t = time.fromisoformat(self.raw["working_hours"]["start"])
        return t.hour * 60 + t.minute

    @cached_property
    def work_end_minute(self) -> int:
        t = time.fromisoformat(self.raw["working_hours"]["end"])
        return t.hour * 60 + t.minute

    @cached_property
    def workdays(self) -> frozenset[int]:
        return frozenset(self.raw["working_hours"]["weekdays"])

    @cached_property
    def timezone(self) -> ZoneInfo | None:
        tz = self.raw["working_hours"]["timezone"]
        return ZoneInfo(tz) if tz else None

    @cached_property
    def holidays(self) -> frozenset[date]:
        return frozenset(date.fromisoformat(h) for h in self.raw["holidays"])

    @property
    def stale_after_seconds(self) -> int:
        return int(self.raw["stale_after_seconds"])

    @property
    def resolution_hours(self) -> int:
        return int(self.raw["resolution_hours"])

    @property
    def late_event_days(self) -> int:
        return int(self.raw["late_event_days"])

    @property
    def retention_days(self) -> int:
        return int(self.raw["retention_days"])

    @cached_property
    def enabled_signal_types(self) -> frozenset[str]:
        return frozenset(self.raw["enabled_signal_types"])

    @cached_property
    def disabled_signal_classes(self) -> frozenset[str]:
        return frozenset(self.raw["disabled_signal_classes"])

    def signal_class_enabled(self, name: str) -> bool:
        spec = SIGNAL_CLASS_BY_NAME[name]
        return (name not in self.disabled_signal_classes
                and spec.signal_type in self.enabled_signal_types)

    @property
    def prohibit_volume_only(self) -> bool:
        return bool(self.raw["privacy_settings"]["prohibit_volume_only_metrics"])

    @property
    def actor_level_views(self) -> bool:
        return bool(self.raw["privacy_settings"]["actor_level_views"])

    @cached_property
    def snapshot_hash(self) -> str:
        return config_hash(self.raw)
