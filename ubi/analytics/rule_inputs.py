"""What the signal rules read (``ubi.analytics.signals``): one scope's detections over L days.

The engine builds a ``RuleInputs`` per scope from its per-window detections (``RuleWindow``:
signed severities, the numbers of every anomalous entry as a ``HitTable``, values, window
completeness, clean-window masks and the supporting features' baselines), the peer-group
percentiles of the actor scope (``PeerContext``), presence, leave and quiet days, and each
subject's type. The rules only read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HitInfo:
    """Numbers of one anomalous value, kept for reasons and evidence."""

    value: float
    mean: float
    std: float
    z: float
    confidence: float


class HitTable(Mapping[tuple[int, int, int], HitInfo]):
    """The numbers of every anomalous entry (s, f, l) of one window, stored as sorted arrays.

    Lookups (only for the few entries where a rule fires) use a binary search, so a large
    backfill does not build millions of Python objects up front.
    """

    def __init__(self, shape: tuple[int, int, int], s: np.ndarray, f: np.ndarray,
                 lday: np.ndarray, value: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 z: np.ndarray, confidence: np.ndarray) -> None:
        self._shape = shape
        keys = np.ravel_multi_index((s, f, lday), shape) if len(s) else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._cols = [np.asarray(a, dtype=np.float64)[order]
                      for a in (value, mean, std, z, confidence)]

    @classmethod
    def from_dict(cls, shape: tuple[int, int, int],
                  hits: Mapping[tuple[int, int, int], HitInfo]) -> HitTable:
        """Build from a plain mapping (tests, small inputs)."""
        items = list(hits.items())
        cols = list(zip(*[(k[0], k[1], k[2], h.value, h.mean, h.std, h.z, h.confidence)
                          for k, h in items], strict=True)) if items else [()] * 8
        arr = [np.asarray(c) for c in cols]
        return cls(shape, arr[0].astype(np.int64), arr[1].astype(np.int64),
                   arr[2].astype(np.int64), *arr[3:])

    def _pos(self, key: tuple[int, int, int]) -> int:
        s, f, lday = key
        if not (0 <= s < self._shape[0] and 0 <= f < self._shape[1]
                and 0 <= lday < self._shape[2]):
            return -1
        flat = (s * self._shape[1] + f) * self._shape[2] + lday
        i = int(np.searchsorted(self._keys, flat))
        return i if i < self._keys.size and self._keys[i] == flat else -1

    def __getitem__(self, key: tuple[int, int, int]) -> HitInfo:
        i = self._pos(key)
        if i < 0:
            raise KeyError(key)
        return HitInfo(*(float(c[i]) for c in self._cols))

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        return self._pos((int(key[0]), int(key[1]), int(key[2]))) >= 0

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        s, f, lday = np.unravel_index(self._keys, self._shape)
        return iter(zip(s.tolist(), f.tolist(), lday.tolist(), strict=True))

    def __len__(self) -> int:
        return int(self._keys.size)


@dataclass
class RuleWindow:
    """One window's detection for the rule days (L days from ``RuleInputs.day0``).

    ``severity`` int8 [S, F, L] signed as in ``anomalies.detect``; ``hits`` the numbers of every
    non-zero entry, keyed (s, f, l); ``values`` float32 [S, F, L] for snapshots;
    ``window_confidence`` [S, L]; ``drop_ok`` bool [S, L]: the window overlaps no leave, quiet
    or incomplete day; ``context`` feature -> (value, mean, std, usable), each [S, L].
    """

    severity: np.ndarray
    hits: Mapping[tuple[int, int, int], HitInfo]
    values: np.ndarray
    window_confidence: np.ndarray
    drop_ok: np.ndarray
    #: bool [S, L]: the same for rates, shares and averages, which days without events do not
    #: pull down: only incomplete days spoil their window. None = as ``drop_ok``.
    drop_ok_intensive: np.ndarray | None = None
    context: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict)


@dataclass
class PeerContext:
    """Peer-group percentiles per day (actor scope): arrays [G, L], ``group`` [S]."""

    group: np.ndarray
    labels: list[str]
    reviews_p90: np.ndarray
    reviews_count: np.ndarray
    rpwi_p10: np.ndarray
    rpwi_p90: np.ndarray
    rpwi_count: np.ndarray
    #: [G, L] peer median of reviews_given 28d; None = not computed (no median guard).
    reviews_p50: np.ndarray | None = None
    #: [S, L] whether the actor is a member of the percentile's population that day (active,
    #: complete window); a rule only ranks members. None = every actor with a value.
    reviews_member: np.ndarray | None = None
    rpwi_member: np.ndarray | None = None


@dataclass
class RuleInputs:
    """Everything the rules read for one scope over L days starting at UTC day ``day0``.

    Days before ``eval_offset`` are lookback only: rules read them, candidates are produced for
    days from ``eval_offset`` on. ``counters`` [S, L, C] are the scope's rollup counters (for
    event summaries); ``present`` [S, L] whether the subject had events that UTC day.
    ``at_work`` / ``at_work_so_far`` [S, L]: presence on the subject's own local days, in full
    and as known when each day closed (``DailyActivity.presence``): what the presence side of
    ``engagement_drop`` counts. None = ``present``.
    """

    tenant_id: str
    scope: str
    subject_ids: list[str]
    day0: int
    eval_offset: int
    workday: np.ndarray
    present: np.ndarray
    counters: np.ndarray
    windows: dict[str, RuleWindow]
    peers: PeerContext | None = None
    #: bool [S, L]: the subject's baselines are past warm-up (``min_days`` workdays observed
    #: before the day); no rule fires before. None = every subject is established.
    established: np.ndarray | None = None
    #: Each subject's ``actor_type`` (actors, cohorts) or ``mixed`` (teams, the tenant), for
    #: the rules' applicability (``SignalClassSpec.applies_to``). None = every subject human.
    subject_types: Sequence[str] | None = None
    #: bool [L] quiet days of the tenant (holidays, most people away) and [S, L] the
    #: subject's leave days (``presence``). None = none.
    quiet: np.ndarray | None = None
    leave: np.ndarray | None = None
    at_work: np.ndarray | None = None
    at_work_so_far: np.ndarray | None = None
    #: float [S, L] the subject's usual share of workdays at work and bool [S, L] whether it
    #: is known (``presence.usual_workday_share``), computed by the engine over the whole
    #: loaded history (more than the rules' lookback). None = computed from these inputs.
    usual_share: np.ndarray | None = None
    usual_known: np.ndarray | None = None

    def attendance(self) -> tuple[np.ndarray, np.ndarray]:
        """(``at_work``, ``at_work_so_far``), ``present`` where not given."""
        at_work = self.present if self.at_work is None else self.at_work
        return at_work, at_work if self.at_work_so_far is None else self.at_work_so_far
