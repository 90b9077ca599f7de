"""Nightly baseline recompute (SPEC §5.2, ``baselines`` queue).

Detection refreshes the baselines of a tenant whenever it evaluates a closed day; the nightly
recompute also refreshes tenants whose data did not move (the history window still slides,
and config changes take effect), reading the last ``history_days`` + 28 days of rollups in one
set-based query, computing every scope's baselines in one vectorised engine pass (baselines
only: no feature rows, detection, scores or rules), and writing them in bulk (binary COPY). It only
writes baselines: anomalies and signals belong to detection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.calendar import day_number
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.taxonomy import WINDOWS
from ubi.models import IngestionState
from ubi.observability.metrics import BASELINE_DURATION, apportion
from ubi.services import anchors, configs, focus_time
from ubi.services.detection import upsert_baselines
from ubi.services.tenant_locks import tenant_lock
from ubi.store.activity import incomplete_days, load_activity


@dataclass
class RecomputeOutcome:
    tenant_id: str
    actors: int = 0
    days: int = 0
    baselines: int = 0
    load_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    busy: bool = False


def recompute_baselines(session: Session, tenant_id: str, *,
                        now: datetime | None = None) -> RecomputeOutcome:
    now = now or clock.utcnow()
    outcome = RecomputeOutcome(tenant_id)
    if not tenant_lock(session, "detect", tenant_id):  # detection writes baselines too
        outcome.busy = True
        return outcome
    config = configs.load_config(session, tenant_id)
    end = now.date() - timedelta(days=1)
    start = end - timedelta(days=int(config.baseline_algorithm["history_days"])
                            + max(WINDOWS.values()) - 1)
    t0 = time.perf_counter()
    focus_time.refresh_pending(session, tenant_id, end)  # the focus features still owes
    activity = load_activity(session, tenant_id, start, end)
    incomplete = incomplete_days(session, tenant_id, start, end)
    t1 = time.perf_counter()
    outcome.load_s, outcome.actors, outcome.days = t1 - t0, activity.n_subjects, activity.n_days
    if activity.n_subjects == 0:
        return outcome
    state = session.get(IngestionState, tenant_id)
    # Baselines only: the engine skips feature rows, detection, scores and rules, whose results
    # this task would not store (and so needs no previous anomalies / signals / scores).
    analysis = analyse_tenant(activity, config, tenant_id=tenant_id,
                              incomplete_days=incomplete, evaluate_from_day=day_number(end),
                              previous=None, now=now, baselines_only=True,
                              anchors=anchors.active(session, tenant_id))
    t2 = time.perf_counter()
    outcome.compute_s = t2 - t1
    outcome.baselines = upsert_baselines(session, analysis)
    if state is not None:
        state.last_baseline_recompute_at = now
    outcome.write_s = time.perf_counter() - t2
    # Per actor scope: its measured baselines, plus loading and writing apportioned by them.
    for scope, seconds in apportion(analysis.baseline_seconds,
                                    time.perf_counter() - t0).items():
        BASELINE_DURATION.labels(tenant_id, scope).observe(seconds)
    return outcome
