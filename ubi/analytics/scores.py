"""Dimension scores (SPEC §5.4): 50 is the subject's own normal, higher is healthier.

score = clamp(50 + 10 * mean over usable features f of (z_f * health_direction_f), 0, 100)

over the dimension's non-volume features with a health direction (taxonomy ``FEATURES``),
where a feature is usable on a day when it has a value and a baseline of confidence >= 0.5.
Health orientation per feature (``health_direction``): +1 higher is healthier (active_days,
pr_throughput, focus_session_avg_minutes, reviews_given, distinct_collaborators,
cross_team_interactions), -1 lower is healthier (failure rates, rework_ratio,
context_switch_rate, after_hours_ratio, late_night_events, llm_failure_rate,
llm_requests_per_work_item, override_count). Volume-only counts never enter a score.

confidence = (mean baseline confidence of the usable features) x (share of the dimension's
features that were usable) x (window completeness). No usable feature: no score (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ubi.analytics.taxonomy import DIMENSIONS, FEATURES

DIMENSION_INDEX = {d: i for i, d in enumerate(DIMENSIONS)}


def score_features(window: str) -> dict[str, list[int]]:
    """Feature indexes that score each dimension on ``window`` (non-volume, oriented)."""
    out: dict[str, list[int]] = {d: [] for d in DIMENSIONS}
    for i, spec in enumerate(FEATURES):
        if not spec.volume_only and spec.health_direction != 0 and window in spec.windows:
            out[spec.dimension].append(i)
    return out


@dataclass
class ScoreBlock:
    """Scores of S subjects on D days for one window; arrays [S, len(DIMENSIONS), D]."""

    score: np.ndarray  # NaN where no feature was usable
    confidence: np.ndarray
    n_features: np.ndarray  # usable features behind each score
    #: [S, len(DIMENSIONS), D] the last earlier score (NaN if none), for "75 -> 50".
    previous: np.ndarray


def compute_scores(z: np.ndarray, usable: np.ndarray, baseline_confidence: np.ndarray,
                   window_confidence: np.ndarray, window: str,
                   previous: np.ndarray | None = None) -> ScoreBlock:
    """Scores from z-scores ``z`` [S, F, D] (features in ``FEATURE_NAMES`` order).

    ``usable`` bool [S, F, D]; ``baseline_confidence`` [S, F, D]; ``window_confidence`` [S, D];
    ``previous`` [S, len(DIMENSIONS)]: each subject's last stored score before the first day
    (NaN if none).
    """
    n_s, _, n_d = z.shape
    n_dim = len(DIMENSIONS)
    direction = np.array([f.health_direction for f in FEATURES], dtype=np.float64)
    score = np.full((n_s, n_dim, n_d), np.nan)
    conf = np.zeros((n_s, n_dim, n_d))
    count = np.zeros((n_s, n_dim, n_d), dtype=np.int64)
    for dim, idx in score_features(window).items():
        if not idx:
            continue
        i = DIMENSION_INDEX[dim]
        zz = z[:, idx, :] * direction[idx][None, :, None]
        ok = usable[:, idx, :] & ~np.isnan(zz)
        n = ok.sum(axis=1)
        total = np.where(ok, zz, 0.0).sum(axis=1)
        bconf = np.where(ok, baseline_confidence[:, idx, :], 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score[:, i, :] = np.where(n > 0, np.clip(50.0 + 10.0 * total / n, 0.0, 100.0),
                                      np.nan)
            conf[:, i, :] = np.where(n > 0, (bconf / n) * (n / len(idx)) * window_confidence,
                                     0.0)
        count[:, i, :] = n
    seed = (np.full((n_s, n_dim), np.nan) if previous is None
            else np.asarray(previous, dtype=np.float64))
    return ScoreBlock(score, conf, count, previous_values(score, seed))


def previous_values(score: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """For each day, the last non-NaN score strictly before it (``seed`` before day 0)."""
    n_d = score.shape[2]
    with_seed = np.concatenate([seed[:, :, None], score], axis=2)  # [S, G, D+1]
    has = ~np.isnan(with_seed)
    idx = np.where(has, np.arange(n_d + 1)[None, None, :], 0)
    np.maximum.accumulate(idx, axis=2, out=idx)
    filled = np.take_along_axis(with_seed, idx, axis=2)
    return filled[:, :, :n_d]

