"""Deterministic ids for analytics rows (SPEC §5.6: evidence references features and baselines).

Every id is a UUID version 5 over the canonical JSON list of its natural key, in a namespace of
its own per kind. Recomputing the same thing yields the same id, so evidence can name a feature
row or a baseline before (or without) any database round trip, and a re-run upserts instead of
duplicating.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence

import numpy as np

from ubi.analytics.calendar import day_from_number

_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ubi:analytics")
_NS = {kind: uuid.uuid5(_ROOT, kind)
       for kind in ("feature", "baseline", "anomaly", "signal", "score")}


def _make(kind: str, *parts: object) -> str:
    # JSON of the list keeps the parts unambiguous (no separator a part could contain).
    key = json.dumps([str(p) for p in parts], separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(_NS[kind], key))


def _json_part(part: object) -> str:
    """One element of ``_make``'s key: the compact JSON list is its elements' JSON joined by
    commas, so a key can be assembled from pieces encoded once."""
    return json.dumps(str(part), ensure_ascii=False)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Where the 32 hex digits go in the 36 characters of the canonical form 8-4-4-4-12.
_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_DASH_POS = np.array([8, 13, 18, 23])


def _uuid5_strings(digests: bytes) -> np.ndarray:
    """The canonical strings of version 5 UUIDs from their names' concatenated SHA-1 digests
    (20 bytes each, of namespace bytes + UTF-8 name, as ``uuid.uuid5``), as an 'S36' array:
    the version / variant bits and the hex formatting vectorised."""
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = np.empty((len(raw), 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.empty((len(raw), 36), dtype=np.uint8)
    out[:, _HEX_POS] = hexed
    out[:, _DASH_POS] = ord("-")
    return out.view("S36").reshape(len(raw))


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


def baseline_ids(tenant_id: str, scope: str, window: str, subject_ids: Sequence[str],
                 feature_names: Sequence[str], day_types: Sequence[str], subjects: np.ndarray,
                 features: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """``baseline_id`` of many rows of one (tenant, scope, window) at once, as an ASCII 'S36'
    array: row i is (``subject_ids[subjects[i]]``, ``feature_names[features[i]]``,
    ``day_types[kinds[i]]``). The ids are identical to ``baseline_id``'s; the key's
    per-subject prefix and per-(feature, day type) suffix are encoded once, not once per row
    (a nightly recompute of a large tenant names ~10^6 baselines)."""
    ns = _NS["baseline"].bytes
    head = f"[{_json_part(tenant_id)},{_json_part(scope)},"
    prefix = [ns + f"{head}{_json_part(s)},".encode() for s in subject_ids]
    n_k = len(day_types)
    suffix = [f"{_json_part(f)},{_json_part(window)},{_json_part(d)}]".encode()
              for f in feature_names for d in day_types]
    fk = (np.asarray(features, dtype=np.int64) * n_k
          + np.asarray(kinds, dtype=np.int64)).tolist()
    sha1 = hashlib.sha1
    digests = b"".join([sha1(prefix[s] + suffix[j]).digest() for s, j in zip(
        np.asarray(subjects, dtype=np.int64).tolist(), fk, strict=True)])
    return _uuid5_strings(digests)


def feature_ids(tenant_id: str, scope: str, window: str, subject_ids: Sequence[str],
                feature_names: Sequence[str], subjects: np.ndarray, features: np.ndarray,
                days: np.ndarray) -> np.ndarray:
    """``feature_id`` of many rows of one (tenant, scope, window) at once, as an ASCII 'S36'
    array: row i is (``subject_ids[subjects[i]]``, ``feature_names[features[i]]``, UTC day
    number ``days[i]``). Identical to ``feature_id``; each subject's key prefix and each
    (feature, day) suffix is encoded once (a features run names ~10^4-10^5 values)."""
    ns = _NS["feature"].bytes
    head = f"[{_json_part(tenant_id)},{_json_part(scope)},"
    subjects_l = np.asarray(subjects, dtype=np.int64).tolist()
    prefix = {s: ns + f"{head}{_json_part(subject_ids[s])},".encode() for s in set(subjects_l)}
    pairs = list(zip(np.asarray(features, dtype=np.int64).tolist(),
                     np.asarray(days, dtype=np.int64).tolist(), strict=True))
    suffix = {(f, d): f"{_json_part(feature_names[f])},{_json_part(window)},"
                      f"{_json_part(_day(d))}]".encode() for f, d in set(pairs)}
    sha1 = hashlib.sha1
    digests = b"".join([sha1(prefix[s] + suffix[fd]).digest()
                        for s, fd in zip(subjects_l, pairs, strict=True)])
    return _uuid5_strings(digests)


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
