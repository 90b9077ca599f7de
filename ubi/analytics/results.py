"""The result tables of ``analyse_tenant`` (``ubi.analytics.engine``): plain data to persist.

- ``FeatureTable``: feature values of one (scope, window) on the evaluated days, columnar
  (``ubi.store.features`` writes them as they are);
- ``BaselineTable``: the final baselines of one (scope, window) per (subject, feature,
  day_type); ``iter_rows()`` yields ``BaselineRow`` records;
- ``ScoreTable``: dimension scores of one (scope, window); ``iter_rows()`` yields ``ScoreRow``;
- ``TenantAnalysis``: everything one call computed (the tables above, the anomaly and signal
  changes, quiet days, stats); ``next_state()`` gives the next run's ``PreviousState``
  (active anomalies, signals and the latest score per ``ScoreKey``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ubi.analytics.anomalies import ActiveAnomaly, AnomalyChanges, AnomalyKey
from ubi.analytics.baselines import DAY_TYPE_NAMES, BaselineParams, FinalBaselines
from ubi.analytics.explain import describe_score
from ubi.analytics.features import N_FEATURES
from ubi.analytics.ids import baseline_id, score_id
from ubi.analytics.scores import ScoreBlock
from ubi.analytics.signal_lifecycle import Signal, SignalChanges, SignalKey
from ubi.analytics.taxonomy import DIMENSIONS, FEATURE_NAMES, FEATURES

ScoreKey = tuple[str, str, str, str]
"""(actor_scope, subject_id, dimension, window)."""

_DIMENSION_OF = np.array([f.dimension for f in FEATURES])


@dataclass
class PreviousState:
    """What the last run left active: anomalies, signals and the latest score per key."""

    anomalies: Mapping[AnomalyKey, ActiveAnomaly] = field(default_factory=dict)
    signals: Mapping[SignalKey, Signal] = field(default_factory=dict)
    scores: Mapping[ScoreKey, float] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> PreviousState:
        return cls()


@dataclass
class FeatureTable:
    """Feature values of one scope and window on the evaluated days, columnar.

    ``values`` [S, E, F] (E evaluated days ``days``, F in ``FEATURE_NAMES`` order, NaN = null),
    ``confidence`` [S, E], ``exists`` [S, E]: whether rows exist (``stored_cells``: none for
    groups under ``min_team_size``, subjects before their first event, windows without one).
    """

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    days: np.ndarray
    values: np.ndarray
    confidence: np.ndarray
    exists: np.ndarray

    @property
    def n_rows(self) -> int:
        applicable = sum(1 for f in FEATURES if self.window in f.windows)
        return int(self.exists.sum()) * applicable

    def iter_values(self) -> Iterator[tuple[str, int, str, float | None]]:
        """(subject, day number, feature name, value or None) of every stored value; the
        stored record itself is ``ubi.store.features.FeatureRecord``."""
        feats = [(i, f.name) for i, f in enumerate(FEATURES) if self.window in f.windows]
        cells_s, cells_e = np.nonzero(self.exists)
        for s, e in zip(cells_s.tolist(), cells_e.tolist(), strict=True):
            day = int(self.days[e])
            subject = self.subject_ids[s]
            for i, name in feats:
                v = float(self.values[s, e, i])
                yield subject, day, name, None if np.isnan(v) else v


@dataclass(frozen=True)
class BaselineRow:
    """One stored baseline (SPEC §5.2). Statistics are None where undefined."""

    baseline_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    feature_name: str
    dimension: str
    window: str
    day_type: str
    mean: float | None
    std_dev: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    n_observations: int
    confidence: float
    n_outliers: int
    n_level_shifts: int
    last_recomputed_at: datetime
    algorithm: Mapping[str, Any]


@dataclass
class BaselineTable:
    """Final baselines of one scope and window; ``final`` arrays are [2, S*F] (series s*F+f)."""

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    final: FinalBaselines
    params: BaselineParams
    computed_at: datetime

    @property
    def n_rows(self) -> int:
        return int((self.final.n_obs > 0).sum())

    def iter_rows(self) -> Iterator[BaselineRow]:
        """Rows with at least one observation (a baseline without data is not stored)."""
        algorithm = self.params.as_dict()
        fin = self.final

        def opt(a: np.ndarray, k: int, n: int) -> float | None:
            v = float(a[k, n])
            return None if np.isnan(v) else v

        for k, n in zip(*np.nonzero(fin.n_obs > 0), strict=True):
            s, f = divmod(int(n), N_FEATURES)
            spec = FEATURES[f]
            subject = self.subject_ids[s]
            day_type = DAY_TYPE_NAMES[k]
            yield BaselineRow(
                baseline_id=baseline_id(self.tenant_id, self.scope, subject, spec.name,
                                        self.window, day_type),
                tenant_id=self.tenant_id, actor_scope=self.scope, subject_id=subject,
                feature_name=spec.name, dimension=spec.dimension, window=self.window,
                day_type=day_type, mean=opt(fin.mean, k, n), std_dev=opt(fin.std, k, n),
                p50=opt(fin.p50, k, n), p90=opt(fin.p90, k, n), p95=opt(fin.p95, k, n),
                n_observations=int(fin.n_obs[k, n]), confidence=float(fin.confidence[k, n]),
                n_outliers=int(fin.n_outliers[k, n]),
                n_level_shifts=int(fin.n_level_shifts[k, n]),
                last_recomputed_at=self.computed_at, algorithm=algorithm)


@dataclass(frozen=True)
class ScoreRow:
    """One dimension score (SPEC §5.4); ``previous_score`` None when there was none."""

    score_id: str
    tenant_id: str
    actor_scope: str
    subject_id: str
    dimension: str
    window: str
    day: int
    score: float
    confidence: float
    previous_score: float | None
    n_features: int
    reason: str


@dataclass
class ScoreTable:
    """Scores of one scope and window on the evaluated days; ``block`` arrays [S, 4, E].

    ``health_z`` [S, F, E] float32: the health-oriented z of each usable feature (NaN
    otherwise), used for the reason's main contributors.
    """

    tenant_id: str
    scope: str
    window: str
    subject_ids: list[str]
    days: np.ndarray
    block: ScoreBlock
    health_z: np.ndarray

    @property
    def n_rows(self) -> int:
        return int((~np.isnan(self.block.score)).sum())

    def latest(self) -> dict[ScoreKey, float]:
        """Last score per (scope, subject, dimension, window): the next run's ``previous``."""
        out: dict[ScoreKey, float] = {}
        sc = self.block.score
        for s, g, e in zip(*np.nonzero(~np.isnan(sc)), strict=True):
            out[(self.scope, self.subject_ids[s], DIMENSIONS[g], self.window)] = float(
                sc[s, g, e])
        return out

    def iter_rows(self) -> Iterator[ScoreRow]:
        b = self.block
        for s, g, e in zip(*np.nonzero(~np.isnan(b.score)), strict=True):
            dim = DIMENSIONS[g]
            idx = np.flatnonzero(dim == _DIMENSION_OF)
            zs = self.health_z[s, idx, e]
            order = [int(i) for i in idx[np.argsort(-np.abs(np.nan_to_num(zs)))]
                     if not np.isnan(self.health_z[s, i, e])][:3]
            contributors = [(FEATURE_NAMES[i], self.window, float(self.health_z[s, i, e]))
                            for i in order]
            prev = float(b.previous[s, g, e])
            day = int(self.days[e])
            yield ScoreRow(
                score_id=score_id(self.tenant_id, self.scope, self.subject_ids[s], dim,
                                  self.window, day),
                tenant_id=self.tenant_id, actor_scope=self.scope,
                subject_id=self.subject_ids[s], dimension=dim, window=self.window, day=day,
                score=float(b.score[s, g, e]), confidence=float(b.confidence[s, g, e]),
                previous_score=None if np.isnan(prev) else prev,
                n_features=int(b.n_features[s, g, e]),
                reason=describe_score(dim, prev, float(b.score[s, g, e]), contributors))


@dataclass
class TenantAnalysis:
    """Everything ``analyse_tenant`` computed for one tenant (see the module docstring).

    ``evaluated_days``: UTC day numbers evaluated (incomplete days included: they get features
    but no anomalies or signals). ``quiet_days``: day numbers read as quiet. ``stats``: counts
    the service logs and exports as metrics (outliers excluded, level shifts accepted, ...).
    ``baseline_seconds``: time per actor scope, measured (a timer, not the clock).
    """

    tenant_id: str
    evaluated_days: list[int]
    features: list[FeatureTable]
    baselines: list[BaselineTable]
    anomalies: AnomalyChanges
    scores: list[ScoreTable]
    signals: SignalChanges
    quiet_days: list[int]
    stats: dict[str, int]
    #: Seconds spent computing each actor scope's baselines (the scope's baseline recursion
    #: over every window; in a baselines-only run also the scope's cubes, which serve nothing
    #: else there): ``ubi_baseline_recompute_duration_seconds``.
    baseline_seconds: dict[str, float] = field(default_factory=dict)

    def next_state(self) -> PreviousState:
        """The ``previous`` argument of the next run."""
        scores: dict[ScoreKey, float] = {}
        for t in self.scores:
            scores.update(t.latest())
        return PreviousState(anomalies=dict(self.anomalies.active),
                             signals=dict(self.signals.active), scores=scores)

