"""Re-anchored baselines (SPEC §5.2 "new normal"): an anchored series learns only from the
days after its anchor, so its baseline restarts its warm-up there; other series and scopes
are untouched."""

from __future__ import annotations

import numpy as np

from ubi.analytics.baselines import BaselineParams, anchored_validity, compute_baselines

FIRST_DAY = 20_000  # UTC day number of day 0
FEATURES = ("commit_count", "after_hours_ratio")


def series() -> tuple[np.ndarray, np.ndarray]:
    """Two actors x two features over 40 days (all workdays): every series sits at 10 for
    20 days, then actor 0's after_hours_ratio moves to 20 for good. Day-major [D, S*F]."""
    xs = np.full((40, 4), 10.0)
    xs += np.tile([0.0, 0.3, -0.2, 0.1], (40, 1)) * np.sin(np.arange(40))[:, None]
    xs[20:, 1] += 10.0
    return xs, np.ones((40, 4), dtype=bool)


def test_an_anchored_series_reads_only_the_days_after_its_anchor() -> None:
    xs, ok = series()
    anchors = {("actor", "a0", "after_hours_ratio"): FIRST_DAY + 21,
               ("team", "a0", "commit_count"): FIRST_DAY + 5,  # another scope: ignored
               ("actor", "ghost", "commit_count"): FIRST_DAY + 5}  # unknown subject: ignored
    read_only = np.broadcast_to(ok, ok.shape)
    anchored = anchored_validity(read_only, "actor", ["a0", "a1"], FEATURES, anchors, FIRST_DAY)
    assert anchored is not read_only and not anchored[:22, 1].any() and anchored[22:, 1].all()
    assert anchored[:, [0, 2, 3]].all()  # the other series keep every day
    params = BaselineParams()
    plain = compute_baselines(xs, ok, np.ones(40, dtype=bool), params, day_major=True)
    renewed = compute_baselines(xs, anchored, np.ones(40, dtype=bool), params, day_major=True)
    # Without the anchor, a week into the change the baseline still says 10 (confident);
    # with it, the baseline is warming up on the new level, so nothing is raised from it.
    day = 28
    assert plain.mean[1, day] < 11 and plain.confidence[1, day] >= 0.5
    assert renewed.n_obs[1, day] == day - 22 and renewed.confidence[1, day] < 0.5
    assert abs(renewed.mean[1, day] - 20) < 0.5
    # After the warm-up the new normal is a confident baseline.
    assert renewed.confidence[1, 35] >= 0.5 and abs(renewed.mean[1, 35] - 20) < 0.5
    # The other series' baselines are exactly those of the unanchored run.
    for n in (0, 2, 3):
        np.testing.assert_array_equal(plain.mean[n], renewed.mean[n])


def test_no_anchor_of_the_scope_leaves_the_mask_itself() -> None:
    _, ok = series()
    assert anchored_validity(ok, "actor", ["a0", "a1"], FEATURES, {}, FIRST_DAY) is ok
    assert anchored_validity(ok, "actor", ["a0", "a1"], FEATURES,
                             {("actor", "a0", "commit_count"): FIRST_DAY - 3}, FIRST_DAY) is ok
