"""The peer comparison inputs of the actor scope (``PeerContext``, SPEC §5.5).

While the analysis runs window after window, ``collect_peer_inputs`` keeps the actor values the
peer rules rank (``reviews_given`` 28d, ``llm_requests_per_work_item`` 7d) and which actors
belong to each day's population; ``peer_context`` turns them into per-day nearest-rank
percentiles of each peer group (``aggregates.peer_groups``, ``aggregates.group_percentile``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ubi.analytics.aggregates import PeerGroups, group_percentile
from ubi.analytics.features import FeatureCube
from ubi.analytics.rule_inputs import PeerContext


def collect_peer_inputs(store: dict[str, tuple[np.ndarray, np.ndarray]], cube: FeatureCube,
                        window: str, r0: int, complete: np.ndarray) -> None:
    """Keep the actor values the peer percentiles need. Members: actors active in the window
    whose window is complete (fully loaded, after their first activity): a 28-day figure over
    the first ten days of someone's history is not a 28-day figure, and would rank newcomers
    and everyone at the start of a range as if they reviewed little."""
    active = (cube.feature("event_count")[:, r0:] > 0) & complete[:, r0:]
    if window == "28d":
        store["reviews"] = (cube.feature("reviews_given")[:, r0:].copy(), active)
    if window == "7d":
        store["rpwi"] = (cube.feature("llm_requests_per_work_item")[:, r0:].copy(), active)


def peer_context(peers: PeerGroups, arrays: Mapping[str, tuple[np.ndarray, np.ndarray]]
                 ) -> PeerContext | None:
    """The actor scope's peer percentiles per day from ``collect_peer_inputs``' arrays;
    None if none were collected."""
    if not arrays:
        return None
    n_g = len(peers.labels)
    any_arr = next(iter(arrays.values()))[0]
    nan = np.full((n_g, any_arr.shape[1]), np.nan)
    zero = np.zeros((n_g, any_arr.shape[1]), dtype=np.int64)
    r_p50, r_p90, r_n = nan, nan, zero
    if "reviews" in arrays:
        v, m = arrays["reviews"]
        r_p90, r_n = group_percentile(v, peers.index, n_g, 90.0, m)
        r_p50, _ = group_percentile(v, peers.index, n_g, 50.0, m)
    p10, p90, n = nan, nan, zero
    if "rpwi" in arrays:
        v, m = arrays["rpwi"]
        p10, n = group_percentile(v, peers.index, n_g, 10.0, m)
        p90, _ = group_percentile(v, peers.index, n_g, 90.0, m)
    return PeerContext(group=peers.index, labels=peers.labels, reviews_p90=r_p90,
                       reviews_count=r_n, rpwi_p10=p10, rpwi_p90=p90, rpwi_count=n,
                       reviews_p50=r_p50,
                       reviews_member=arrays["reviews"][1] if "reviews" in arrays else None,
                       rpwi_member=arrays["rpwi"][1] if "rpwi" in arrays else None)
