"""Features computed from a later day on (``compute_features(from_index=k)``, the features
step's dirty days) are exactly the full computation's values of those days."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from ubi.analytics.activity import LOCAL_NEXT, LOCAL_PREVIOUS, LOCAL_SAME, DailyActivity
from ubi.analytics.features import compute_features, prepare_activity
from ubi.analytics.taxonomy import CANONICAL_EVENT_TYPES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig

from .helpers import Actor, make_activity

TYPES = sorted(CANONICAL_EVENT_TYPES)


def _activity(seed: int, n_days: int) -> DailyActivity:
    rng = random.Random(seed)
    actors = []
    for i in range(6):
        days: dict[int, dict[str, Any]] = {}
        for d in range(n_days):
            if rng.random() < 0.35:
                continue
            day: dict[str, Any] = {t: rng.randrange(4) for t in rng.sample(TYPES, 6)}
            day.update(after_hours=rng.randrange(3), late_night=rng.randrange(2),
                       hours=rng.sample(range(24), rng.randrange(1, 5)),
                       focus=(rng.random() * 90, rng.randrange(1, 3)),
                       **{"with": [(f"c{rng.randrange(8)}", rng.randrange(1, 4),
                                    rng.random() < 0.5) for _ in range(rng.randrange(3))],
                          "items": [(f"w{rng.randrange(6)}", rng.randrange(3))
                                    for _ in range(rng.randrange(3))]})
            days[d] = day
        actors.append(Actor(f"a{i}", days))
    activity = make_activity(actors, n_days)
    activity.local_days = np.array(
        [[rng.choice([0, LOCAL_SAME, LOCAL_SAME | LOCAL_NEXT, LOCAL_PREVIOUS | LOCAL_SAME])
          for _ in range(n_days)] for _ in actors], dtype=np.int64)
    return activity


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("window", list(WINDOWS))
def test_values_from_a_later_day_are_the_full_computations(seed: int, window: str) -> None:
    activity = _activity(seed, 40)
    config = TenantConfig.default()
    incomplete = np.zeros(activity.n_days, dtype=bool)
    incomplete[[3, 30]] = True
    full = compute_features(activity, window, config, incomplete)
    prepared = prepare_activity(activity)
    for k in (0, 1, 27, 38, 40):
        part = compute_features(activity, window, config, incomplete, prepared, from_index=k)
        assert part.start_day == activity.start_day + timedelta(days=k)
        assert np.array_equal(part.values, full.values[:, k:], equal_nan=True)
        assert np.array_equal(part.confidence, full.confidence[:, k:])
        for name, den in full.denominators.items():
            assert np.array_equal(part.denominators[name], den[:, k:]), name
    with pytest.raises(ValueError):
        compute_features(activity, window, config, from_index=41)
