"""The waits of the outbox drains (signals to the stream, receipts to ERIS) between attempts."""

from __future__ import annotations

import random
from datetime import timedelta


def equal_jitter(attempts: int, *, base_s: float, cap_s: float,
                 rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with equal jitter after ``attempts`` failed attempts: uniform in
    [c/2, c] for c = min(cap_s, base_s * 2^(attempts - 1)), so waits grow but never bunch."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))
