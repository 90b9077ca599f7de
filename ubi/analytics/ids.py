"""Deterministic ids for analytics rows (SPEC §5.6: evidence references features and baselines).

Every id is a UUID version 5 over the canonical JSON list of its natural key, in a namespace of
its own per kind. Recomputing the same thing yields the same id, so evidence can name a feature
row or a baseline before (or without) any database round trip, and a re-run upserts instead of
duplicating.
"""

from __future__ import annotations

import json
import uuid

from ubi.analytics.calendar import day_from_number

_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ubi:analytics")
_NS = {kind: uuid.uuid5(_ROOT, kind)
       for kind in ("feature", "baseline", "anomaly", "signal", "score")}


def _make(kind: str, *parts: object) -> str:
    # JSON of the list keeps the parts unambiguous (no separator a part could contain).
    key = json.dumps([str(p) for p in parts], separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(_NS[kind], key))


def _day(day: int) -> str:
    return day_from_number(day).isoformat()


def feature_id(tenant_id: str, scope: str, subject_id: str, feature: str, window: str,
               day: int) -> str:
    """Id of one feature value: the window ``window`` ending on UTC day number ``day``."""
    return _make("feature", tenant_id, scope, subject_id, feature, window, _day(day))


def baseline_id(tenant_id: str, scope: str, subject_id: str, feature: str, window: str,
                day_type: str) -> str:
    """Id of a baseline; one per (subject, feature, window, day_type), updated in place."""
    return _make("baseline", tenant_id, scope, subject_id, feature, window, day_type)


def anomaly_id(tenant_id: str, scope: str, subject_id: str, feature: str, window: str,
               first_day: int) -> str:
    """Id of one anomaly episode, keyed by the UTC day it was first raised."""
    return _make("anomaly", tenant_id, scope, subject_id, feature, window, _day(first_day))


def signal_id(tenant_id: str, scope: str, subject_id: str, signal_class: str,
              first_day: int) -> str:
    """Id of one signal episode, keyed by the UTC day it was first raised."""
    return _make("signal", tenant_id, scope, subject_id, signal_class, _day(first_day))


def score_id(tenant_id: str, scope: str, subject_id: str, dimension: str, window: str,
             day: int) -> str:
    """Id of one dimension score on one UTC day."""
    return _make("score", tenant_id, scope, subject_id, dimension, window, _day(day))
