"""Process-level tuning of the service processes (web workers, Celery children, the demo).

The ingest hot path allocates a few hundred thousand short-lived objects per 1,000-event batch
(decoded envelopes, events, rows). With Python's default threshold (a young-generation
collection every 700 net allocations) the collector ran hundreds of times per batch, each pass
walking every object a batch still holds: a quarter of the worker's CPU
(``docs/benchmarks/ingest.md``).
A higher threshold keeps cycles collected, just in larger steps; ``gc.freeze`` moves what the
process holds after start-up (modules, the app) out of every later collection.
"""

from __future__ import annotations

import gc

from ubi.settings import Settings, get_settings

_DEFAULT_GEN0 = 700


def tune_gc(settings: Settings | None = None) -> tuple[int, int, int]:
    """Apply ``UBI_GC_THRESHOLD`` to this process and freeze what it holds so far; returns the
    thresholds now in force."""
    threshold = (settings or get_settings()).gc_threshold
    if threshold > 0:
        # Older generations are collected every 20 young collections (10 by default), so a
        # long-lived worker does not pay for full collections of its caches too often.
        gc.set_threshold(threshold, 20, 20)
    else:
        gc.set_threshold(_DEFAULT_GEN0, 10, 10)
    gc.freeze()
    return gc.get_threshold()
