"""The detect step (SPEC §5.2–§5.6, ``detect`` queue): closed days → anomalies, scores, signals.

One run per tenant evaluates every closed day not evaluated yet (a backfill is the same call
over more days, cut into chunks). It loads the tenant's rollups over the evaluated days plus
``history_days`` + 28 days before them, runs the analytics engine with the active anomalies,
signals and latest scores of the previous run, and in one transaction stores feature rows of
every scope, the final baselines, anomaly and score changes, and every new signal version with
its stream outbox row and, for WARN+ team / tenant signals, its signed receipt. Deterministic
ids and version checks make a repeated run a no-op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.anomalies import ActiveAnomaly
from ubi.analytics.baselines import DAY_TYPE_NAMES
from ubi.analytics.calendar import day_from_number, day_number
from ubi.analytics.engine import analyse_tenant, tenant_features
from ubi.analytics.ids import baseline_ids
from ubi.analytics.results import BaselineTable, PreviousState, TenantAnalysis
from ubi.analytics.signal_lifecycle import Signal, SignalChange
from ubi.analytics.taxonomy import FEATURES, SEVERITY_RANK, WINDOWS
from ubi.analytics.tenant_config import TenantConfig
from ubi.integrations import routing
from ubi.models import (
    Anomaly,
    Baseline,
    IngestionState,
    Score,
    SignalVersion,
    table_of,
)
from ubi.models import Signal as SignalRow
from ubi.models.session import dialect_insert, is_postgres
from ubi.observability import tracing
from ubi.observability.metrics import ANOMALIES, BASELINE_DURATION, SIGNALS_GENERATED
from ubi.services import anchors as baseline_anchors
from ubi.services import (
    configs,
    evidence,
    feature_refresh,
    focus_time,
    freshness,
    receipts,
)
from ubi.services.features import GROUP_SCOPES
from ubi.services.followups import enqueue_followup
from ubi.services.tenant_locks import tenant_lock
from ubi.store import bulk, outbox, pgcopy
from ubi.store import features as feature_store
from ubi.store.activity import first_activity_day, incomplete_days, load_activity
from ubi.tasks import names

log = logging.getLogger("ubi.detect")

#: Days evaluated per engine call (bounds memory on long backfills).
CHUNK_DAYS = 60
STREAM_SCHEMA_VERSION = "1.0"


@dataclass
class DetectOutcome:
    tenant_id: str
    evaluated_from: date | None = None
    evaluated_through: date | None = None
    features: int = 0
    baselines: int = 0
    anomalies_created: int = 0
    anomalies_resolved: int = 0
    scores: int = 0
    signal_versions: int = 0
    busy: bool = False
    #: A backfill is still arriving (``freshness.backfill_arriving``): nothing evaluated yet.
    waiting: bool = False
    stats: dict[str, int] = field(default_factory=dict)


def detect_tenant(session: Session, tenant_id: str, *, now: datetime | None = None,
                  through: date | None = None, evaluate_from: date | None = None,
                  correlation_id: str | None = None) -> DetectOutcome:
    """Evaluate the tenant's closed, not yet evaluated days (or an explicit range)."""
    now = now or clock.utcnow()
    outcome = DetectOutcome(tenant_id)
    if not tenant_lock(session, "detect", tenant_id):
        outcome.busy = True
        return outcome
    state = session.get(IngestionState, tenant_id)
    if state is None:
        return outcome
    config = configs.load_config(session, tenant_id)
    # Read before any activity: a day marked again after this read stays marked.
    refresh_marks = feature_refresh.pending(session, tenant_id, feature_refresh.GROUPS)
    if refresh_marks and state.last_evaluated_day is not None:
        refresh_group_features(session, tenant_id, refresh_marks, state.last_evaluated_day,
                               config, now=now, correlation_id=correlation_id,
                               outcome=outcome)
    automatic = through is None and evaluate_from is None
    through = through or freshness.closed_through(session, state, now)
    if through is None:
        return outcome
    if automatic and freshness.backfill_arriving(session, state, now):
        outcome.waiting = True  # the task looks again; the last batch stored owes a run too
        return outcome
    first_evaluation = state.last_evaluated_day is None
    history = int(config.baseline_algorithm["history_days"])
    if evaluate_from is not None and state.last_evaluated_day is not None:
        # Evaluated days are final: re-reading them would need the state as it was then.
        evaluate_from = max(evaluate_from, state.last_evaluated_day + timedelta(days=1))
    if evaluate_from is None:
        if state.last_evaluated_day is not None:
            evaluate_from = state.last_evaluated_day + timedelta(days=1)
        else:
            first = first_activity_day(session, tenant_id)
            if first is None:
                return outcome
            evaluate_from = max(first, through - timedelta(days=history))
    if evaluate_from > through:
        return outcome
    outcome.evaluated_from, outcome.evaluated_through = evaluate_from, through
    previous = load_previous_state(session, tenant_id, state.last_evaluated_day)
    anchors = baseline_anchors.active(session, tenant_id)
    # Evaluated days are final: focus of batches the features step has not run for yet first.
    focus_time.refresh_pending(session, tenant_id, through)
    lookback = history + max(WINDOWS.values())
    chunk_start = evaluate_from
    while chunk_start <= through:
        chunk_end = min(chunk_start + timedelta(days=CHUNK_DAYS - 1), through)
        load_from = chunk_start - timedelta(days=lookback)
        activity = load_activity(session, tenant_id, load_from, chunk_end)
        if activity.n_subjects:
            incomplete = incomplete_days(session, tenant_id, load_from, chunk_end)
            analysis = analyse_tenant(activity, config, tenant_id=tenant_id,
                                      incomplete_days=incomplete,
                                      evaluate_from_day=day_number(chunk_start),
                                      previous=previous, now=now, anchors=anchors)
            # The baselines alone: loading and the rest serve the whole evaluation.
            for scope, seconds in analysis.baseline_seconds.items():
                BASELINE_DURATION.labels(tenant_id, scope).observe(seconds)
            persist_analysis(session, analysis, config, activity_meta(activity),
                             correlation_id=correlation_id, now=now, outcome=outcome)
            previous = analysis.next_state()
        chunk_start = chunk_end + timedelta(days=1)
    state.last_evaluated_day = through
    if state.first_evaluated_day is None or evaluate_from < state.first_evaluated_day:
        state.first_evaluated_day = evaluate_from
    # Marks of the days just evaluated were read before their activity was: covered.
    feature_refresh.release(session, tenant_id, feature_refresh.GROUPS,
                            [m for m in refresh_marks if m[0] <= through])
    state.last_baseline_recompute_at = now
    state.updated_at = now
    if first_evaluation and feature_refresh.any_pending(session, tenant_id, feature_refresh.ALL):
        # A new tenant's history arrived after ``late_event_days``: its features are owed the
        # full recompute now, not at night (one pending run per tenant, the nightly's key).
        enqueue_followup(session, names.RECOMPUTE_TENANT, tenant_id=tenant_id,
                         kwargs={"tenant_id": tenant_id}, dedupe_key=f"baselines:{tenant_id}",
                         correlation_id=correlation_id)
    log.info("tenant evaluated", extra={"ubi": {
        "from": str(evaluate_from), "through": str(through), "features": outcome.features,
        "anomalies": outcome.anomalies_created, "signal_versions": outcome.signal_versions}})
    return outcome


def restate_days(session: Session, tenant_id: str, first_day: date, *,
                 now: datetime | None = None, through: date | None = None) -> DetectOutcome:
    """Recompute the scores of the tenant's evaluated days from ``first_day`` on (through
    ``through``, else the last evaluated day), and its baselines, from the data stored now
    (after a privacy deletion removed some of what they were computed from, or for ``ubi
    recompute``). The caller holds the tenant's detect lock.

    The same engine pass as ``detect_tenant``, seeded with the scores of the day before; its
    anomalies and signals are not stored: those of evaluated days are final, and the deletion
    removed the ones derived from the deleted events itself. Score rows of the restated days
    that the pass does not produce (a subject with no data left) go.
    """
    now = now or clock.utcnow()
    outcome = DetectOutcome(tenant_id)
    state = session.get(IngestionState, tenant_id)
    if state is None or state.last_evaluated_day is None:
        return outcome
    through = min(through or state.last_evaluated_day, state.last_evaluated_day)
    first_day = max(first_day, state.first_evaluated_day or first_day)
    if first_day > through:
        return outcome
    config = configs.load_config(session, tenant_id)
    history = int(config.baseline_algorithm["history_days"])
    lookback = history + max(WINDOWS.values())
    base = load_previous_state(session, tenant_id, first_day - timedelta(days=1))
    previous = PreviousState(anomalies={}, signals={}, scores=base.scores)
    anchors = baseline_anchors.active(session, tenant_id)
    session.execute(sa.delete(Score).where(Score.tenant_id == tenant_id,
                                           Score.day >= first_day, Score.day <= through))
    outcome.evaluated_from, outcome.evaluated_through = first_day, through
    last: TenantAnalysis | None = None
    chunk_start = first_day
    while chunk_start <= through:
        chunk_end = min(chunk_start + timedelta(days=CHUNK_DAYS - 1), through)
        load_from = chunk_start - timedelta(days=lookback)
        activity = load_activity(session, tenant_id, load_from, chunk_end)
        if activity.n_subjects:
            analysis = analyse_tenant(
                activity, config, tenant_id=tenant_id,
                incomplete_days=incomplete_days(session, tenant_id, load_from, chunk_end),
                evaluate_from_day=day_number(chunk_start), previous=previous, now=now,
                anchors=anchors)
            outcome.scores += _upsert_scores(session, analysis, now)
            next_state = analysis.next_state()
            previous = PreviousState(anomalies={}, signals={}, scores=next_state.scores)
            last = analysis
        chunk_start = chunk_end + timedelta(days=1)
    if last is not None:
        outcome.baselines = upsert_baselines(session, last)
    else:  # no data left at all: no normal to keep
        session.execute(sa.delete(Baseline).where(Baseline.tenant_id == tenant_id))
    return outcome


def refresh_group_features(session: Session, tenant_id: str,
                           marks: list[feature_refresh.Mark], last_evaluated: date,
                           config: TenantConfig, *, now: datetime,
                           correlation_id: str | None, outcome: DetectOutcome) -> None:
    """Recompute the team, cohort and tenant features of evaluated days from the first marked
    one on: events arrived for them after an evaluation read them (the features step keeps the
    actor features; anomalies and signals of evaluated days are final)."""
    taken = [m for m in marks if m[0] <= last_evaluated]
    if not taken:
        return
    first = taken[0][0]
    start = first - timedelta(days=max(WINDOWS.values()) - 1)
    focus_time.refresh_pending(session, tenant_id, last_evaluated)
    activity = load_activity(session, tenant_id, start, last_evaluated)
    incomplete = incomplete_days(session, tenant_id, start, last_evaluated)
    tables = tenant_features(activity, config, tenant_id=tenant_id,
                             incomplete_days=incomplete, from_day=day_number(first),
                             scopes=GROUP_SCOPES)
    outcome.features += feature_store.write(session, tables, now=now)
    feature_refresh.release(session, tenant_id, feature_refresh.GROUPS, taken)


def activity_meta(activity: Any) -> dict[str, tuple[str, str | None]]:
    return {a: (t, team) for a, t, team in zip(activity.subject_ids, activity.actor_types,
                                              activity.team_ids, strict=True)}


# --- previous state --------------------------------------------------------------------------

def _dn(d: date | None) -> int:
    return day_number(d) if d is not None else 0


def load_previous_state(session: Session, tenant_id: str,
                        last_evaluated: date | None) -> PreviousState:
    """Active anomalies and signals, and the scores of the last evaluated day."""
    anomalies = {}
    for a in session.execute(sa.select(Anomaly).where(
            Anomaly.tenant_id == tenant_id, Anomaly.status == "active")).scalars():
        active = ActiveAnomaly(
            anomaly_id=a.anomaly_id, tenant_id=a.tenant_id, actor_scope=a.actor_scope,
            subject_id=a.subject_id, feature_name=a.feature_name, window=a.window,
            dimension=a.dimension, severity=a.severity, direction=a.direction, z=a.z_score,
            value=a.value if a.value is not None else float("nan"),
            baseline_mean=a.baseline_mean if a.baseline_mean is not None else float("nan"),
            baseline_std=a.baseline_std if a.baseline_std is not None else float("nan"),
            confidence=a.confidence or 0.0, first_day=_dn(a.first_day or a.day),
            last_day=_dn(a.day), created_at=a.detected_at, updated_at=a.updated_at,
            status=a.status, resolved_at=a.resolved_at, in_band_since=a.within_band_since,
            feature_ids=tuple(a.feature_ids or ()), baseline_id=a.baseline_id or "",
            reason=a.reason, evidence=a.evidence or {})
        anomalies[active.key] = active
    signals = {}
    for s in session.execute(sa.select(SignalRow).where(
            SignalRow.tenant_id == tenant_id, SignalRow.status == "active")).scalars():
        sig = Signal(
            signal_id=s.signal_id, tenant_id=s.tenant_id, actor_scope=s.actor_scope,
            subject_id=s.subject_id, dimension=s.dimension, signal_class=s.signal_class,
            signal_type=s.signal_type, score=s.score, severity=s.severity,
            confidence=s.confidence, status=s.status, reason=s.reason,
            evidence_refs=s.evidence_refs or {}, features_snapshot=s.features_snapshot or {},
            intent=s.intent, expected_outcome=s.expected_outcome, created_at=s.created_at,
            updated_at=s.updated_at, resolved_at=s.resolved_at, version=s.version,
            first_day=_dn(s.first_day or s.day), last_fired_day=_dn(s.last_fired_day or s.day),
            days_without_fire=s.days_without_fire or 0, triggers=tuple(s.triggers or ()))
        signals[sig.key] = sig
    scores: dict[tuple[str, str, str, str], float] = {}
    if last_evaluated is not None:
        for scope, subject, dim, window, value in session.execute(sa.select(
                Score.actor_scope, Score.subject_id, Score.dimension, Score.window,
                Score.score).where(Score.tenant_id == tenant_id, Score.day == last_evaluated)):
            if value is not None:
                scores[(scope, subject, dim, window)] = float(value)
    return PreviousState(anomalies=anomalies, signals=signals, scores=scores)


# --- persistence -----------------------------------------------------------------------------

def persist_analysis(session: Session, analysis: TenantAnalysis, config: TenantConfig,
                     meta: dict[str, tuple[str, str | None]], *, correlation_id: str | None,
                     now: datetime, outcome: DetectOutcome) -> None:
    # Aggregates are detection's own; actor features are the features step's, which may have
    # computed them from events this run did not read: detection only adds the rows missing
    # (windows that move on without new events).
    outcome.features += feature_store.write(session, analysis.features, scopes=GROUP_SCOPES,
                                            now=now)
    outcome.features += feature_store.write(session, analysis.features, scopes=("actor",),
                                            now=now, mode="fill")
    outcome.baselines += upsert_baselines(session, analysis)
    outcome.scores += _upsert_scores(session, analysis, now)
    _persist_anomalies(session, analysis, correlation_id, outcome)
    _persist_signals(session, analysis, config, meta, correlation_id, now, outcome)
    for key, value in analysis.stats.items():
        outcome.stats[key] = outcome.stats.get(key, 0) + int(value)


def _none(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def upsert_baselines(session: Session, analysis: TenantAnalysis) -> int:
    """Replace the tenant's baselines with the analysis' final state.

    The analysis covers every subject with data in the loaded history, so the tenant's rows
    are swapped as a whole (delete + COPY, one transaction: readers see old or new, never a
    mix); subjects without data in the history window lose their stale baselines. A nightly
    recompute of a large tenant writes ~10^6 rows: on PostgreSQL they are encoded column-wise
    with numpy straight into a binary COPY stream (``ubi.store.pgcopy``: no Python object per
    row or cell), sent block by block while the server is still storing and indexing the
    previous ones.
    """
    as_of = day_from_number(analysis.evaluated_days[-1])
    session.execute(sa.delete(Baseline).where(Baseline.tenant_id == analysis.tenant_id))
    if not is_postgres(session):
        return bulk.copy_rows(session, table_of(Baseline),
                              _baseline_rows(analysis, as_of))
    return pgcopy.copy_in(session, table_of(Baseline), _BASELINE_COPY_COLUMNS,
                          (block for table in analysis.baselines
                           for block in _baseline_copy_blocks(table, as_of)))


#: The baseline columns in the order of ``_baseline_copy_blocks``' fields.
_BASELINE_COPY_COLUMNS = (
    "baseline_id", "tenant_id", "actor_scope", "subject_id", "feature_name", "window",
    "day_type", "mean", "std_dev", "p50", "p90", "p95", "n_observations", "confidence",
    "algorithm", "as_of_day", "last_recomputed_at")


def _baseline_keys(table: BaselineTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subjects, features, day types) of the rows to store (at least one observation),
    subject by subject."""
    ns, ks = np.nonzero(table.final.n_obs.T > 0)
    subjects, feats = np.divmod(ns, len(FEATURES))
    return subjects, feats, ks


def _baseline_rows(analysis: TenantAnalysis, as_of: date) -> list[dict[str, Any]]:
    """The rows as dicts, for the portable (non-PostgreSQL) path."""
    rows: list[dict[str, Any]] = []
    names = [f.name for f in FEATURES]
    for table in analysis.baselines:
        fin = table.final
        subjects, feats, ks = _baseline_keys(table)
        ns = subjects * len(FEATURES) + feats
        ids = baseline_ids(table.tenant_id, table.scope, table.window, table.subject_ids,
                           names, DAY_TYPE_NAMES, subjects, feats, ks).astype(str).tolist()
        # One JSON text for the whole table: the algorithm is the same for every row.
        algorithm = bulk.JsonText(json.dumps(table.params.as_dict(), sort_keys=True))

        def col(a: np.ndarray, ks: np.ndarray = ks, ns: np.ndarray = ns) -> list[Any]:
            return [None if v != v else v for v in a[ks, ns].tolist()]

        for bid, s, f, k, mean, std, p50, p90, p95, n, conf in zip(
                ids, subjects.tolist(), feats.tolist(), ks.tolist(), col(fin.mean),
                col(fin.std), col(fin.p50), col(fin.p90), col(fin.p95),
                fin.n_obs[ks, ns].tolist(), fin.confidence[ks, ns].tolist(), strict=True):
            rows.append({
                "baseline_id": bid, "tenant_id": table.tenant_id, "actor_scope": table.scope,
                "subject_id": table.subject_ids[s], "feature_name": names[f],
                "window": table.window, "day_type": DAY_TYPE_NAMES[k], "mean": mean,
                "std_dev": std, "p50": p50, "p90": p90, "p95": p95, "n_observations": int(n),
                "confidence": conf, "algorithm": algorithm, "as_of_day": as_of,
                "last_recomputed_at": table.computed_at})
    return rows


def _baseline_copy_blocks(table: BaselineTable, as_of: date) -> Iterator[tuple[int, bytes]]:
    """The table's rows (those with at least one observation) as binary COPY tuples, in
    blocks of (row count, bytes): one numpy column per field, encoded by ``pgcopy`` (floats
    travel as IEEE doubles, exactly the values computed; NaN statistics are NULL)."""
    fin = table.final
    subjects, feats, ks = _baseline_keys(table)
    if not len(subjects):
        return
    names = [f.name for f in FEATURES]
    ns = subjects * len(FEATURES) + feats
    ids = baseline_ids(table.tenant_id, table.scope, table.window, table.subject_ids, names,
                       DAY_TYPE_NAMES, subjects, feats, ks)
    mean, std, p50, p90, p95 = (pgcopy.Column(">f8", a[ks, ns], nullable=True)
                                for a in (fin.mean, fin.std, fin.p50, fin.p90, fin.p95))
    fields: dict[str, pgcopy.Field] = {
        "baseline_id": pgcopy.Column("S36", ids),
        "tenant_id": pgcopy.text_value(table.tenant_id),
        "actor_scope": pgcopy.text_value(table.scope),
        "subject_id": pgcopy.Text(table.subject_ids, subjects),
        "feature_name": pgcopy.Text(names, feats),
        "window": pgcopy.text_value(table.window),
        "day_type": pgcopy.Text(DAY_TYPE_NAMES, ks),
        "mean": mean, "std_dev": std, "p50": p50, "p90": p90, "p95": p95,
        "n_observations": pgcopy.Column(">i4", fin.n_obs[ks, ns]),
        "confidence": pgcopy.Column(">f8", fin.confidence[ks, ns]),
        "algorithm": pgcopy.jsonb_value(json.dumps(table.params.as_dict(), sort_keys=True)),
        "as_of_day": pgcopy.date_value(as_of),
        "last_recomputed_at": pgcopy.timestamptz_value(table.computed_at),
    }
    assert tuple(fields) == _BASELINE_COPY_COLUMNS
    yield from pgcopy.encode_tuples(list(fields.values()), len(subjects))


def _upsert_scores(session: Session, analysis: TenantAnalysis, now: datetime) -> int:
    rows = [{
        "tenant_id": r.tenant_id, "actor_scope": r.actor_scope, "subject_id": r.subject_id,
        "dimension": r.dimension, "window": r.window, "day": day_from_number(r.day),
        "score": r.score, "previous_score": r.previous_score, "confidence": r.confidence,
        "components": {"n_features": r.n_features, "score_id": r.score_id},
        "reason": r.reason, "computed_at": now,
    } for t in analysis.scores for r in t.iter_rows()]
    return upsert(session, table_of(Score), rows,
                  ["tenant_id", "actor_scope", "subject_id", "dimension", "window", "day"])


def upsert(session: Session, table: sa.Table, rows: list[dict[str, Any]],
           keys: list[str]) -> int:
    """Insert or overwrite rows by key (every non-key column replaced)."""
    if not rows:
        return 0
    return bulk.upsert_replacing(session, table, rows, key_columns=keys,
                                 replace=[c for c in rows[0] if c not in keys])


def _anomaly_row(a: ActiveAnomaly, correlation_id: str | None) -> dict[str, Any]:
    return {
        "anomaly_id": a.anomaly_id, "tenant_id": a.tenant_id, "actor_scope": a.actor_scope,
        "subject_id": a.subject_id, "feature_name": a.feature_name, "dimension": a.dimension,
        "window": a.window, "day": day_from_number(a.last_day), "value": _none(a.value),
        "z_score": float(a.z), "direction": a.direction, "severity": a.severity,
        "status": a.status, "baseline_id": a.baseline_id or None,
        "feature_ids": list(a.feature_ids), "reason": a.reason, "evidence": dict(a.evidence),
        "correlation_id": correlation_id, "detected_at": a.created_at,
        "updated_at": a.updated_at, "within_band_since": a.in_band_since,
        "resolved_at": a.resolved_at, "first_day": day_from_number(a.first_day),
        "baseline_mean": _none(a.baseline_mean), "baseline_std": _none(a.baseline_std),
        "confidence": float(a.confidence),
    }


def _persist_anomalies(session: Session, analysis: TenantAnalysis, correlation_id: str | None,
                       outcome: DetectOutcome) -> None:
    changes = analysis.anomalies
    rows = {a.anomaly_id: _anomaly_row(a, correlation_id)
            for group in (changes.created, changes.updated, changes.resolved) for a in group}
    # An episode that ended (resolved) must leave the active slot before a new one takes it.
    for active in (False, True):
        upsert(session, table_of(Anomaly),
               [r for r in rows.values() if (r["status"] == "active") is active],
               ["tenant_id", "anomaly_id"])
    for a in changes.created:
        ANOMALIES.labels(analysis.tenant_id, a.dimension, a.severity).inc()
    outcome.anomalies_created += len(changes.created)
    outcome.anomalies_resolved += len(changes.resolved)


def signal_payload(sig: Signal, correlation_id: str | None) -> dict[str, Any]:
    """The whole ``BehaviouralSignal`` as it goes on the stream (SPEC §5.5, §12)."""
    def ts(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "signal_id": sig.signal_id, "tenant_id": sig.tenant_id, "actor_scope": sig.actor_scope,
        "subject_id": sig.subject_id, "dimension": sig.dimension,
        "signal_class": sig.signal_class, "signal_type": sig.signal_type,
        "score": round(float(sig.score), 3), "severity": sig.severity,
        "confidence": round(float(sig.confidence), 4), "status": sig.status,
        "reason": sig.reason, "evidence_refs": dict(sig.evidence_refs),
        "features_snapshot": dict(sig.features_snapshot), "intent": sig.intent,
        "expected_outcome": sig.expected_outcome, "created_at": ts(sig.created_at),
        "updated_at": ts(sig.updated_at), "resolved_at": ts(sig.resolved_at),
        "version": sig.version, "correlation_id": correlation_id,
    }


def routing_key(sig: Signal | SignalRow) -> str:
    """The stream's routing key of a signal version (SPEC §12, ``integrations.routing``)."""
    return routing.routing_key(sig.tenant_id, sig.actor_scope, sig.dimension, sig.signal_type,
                               sig.signal_class, sig.severity)


def _signal_row(sig: Signal, meta: dict[str, tuple[str, str | None]],
                correlation_id: str | None) -> dict[str, Any]:
    actor_type, team_id = None, None
    if sig.actor_scope == "actor":
        actor_type, team_id = meta.get(sig.subject_id, (None, None))
    elif sig.actor_scope == "team":
        team_id = sig.subject_id
    elif sig.actor_scope == "cohort":
        actor_type = sig.subject_id
    return {
        "signal_id": sig.signal_id, "tenant_id": sig.tenant_id, "actor_scope": sig.actor_scope,
        "subject_id": sig.subject_id, "actor_type": actor_type, "team_id": team_id,
        "dimension": sig.dimension, "signal_class": sig.signal_class,
        "signal_type": sig.signal_type, "score": float(sig.score), "severity": sig.severity,
        "confidence": float(sig.confidence), "status": sig.status, "reason": sig.reason,
        "evidence_refs": dict(sig.evidence_refs),
        "features_snapshot": dict(sig.features_snapshot), "intent": sig.intent,
        "expected_outcome": sig.expected_outcome, "day": day_from_number(sig.last_fired_day),
        "correlation_id": correlation_id, "created_at": sig.created_at,
        "updated_at": sig.updated_at, "resolved_at": sig.resolved_at, "version": sig.version,
        "first_day": day_from_number(sig.first_day),
        "last_fired_day": day_from_number(sig.last_fired_day),
        "days_without_fire": sig.days_without_fire, "triggers": list(sig.triggers),
    }


def _persist_signals(session: Session, analysis: TenantAnalysis, config: TenantConfig,
                     meta: dict[str, tuple[str, str | None]], correlation_id: str | None,
                     now: datetime, outcome: DetectOutcome) -> None:
    # Evidence of 1 KB or more goes to ERIS; every stored form of the signal keeps the handle.
    stored_refs: dict[int, Any] = {}

    def with_stored_evidence(sig: Signal) -> Signal:
        refs = stored_refs.get(id(sig.evidence_refs))
        if refs is None:
            refs = stored_refs[id(sig.evidence_refs)] = evidence.externalise(
                session, sig.tenant_id, sig.evidence_refs, now=now,
                retention_days=config.retention_days)
        return sig if refs is sig.evidence_refs else replace(sig, evidence_refs=refs)

    changes: list[SignalChange] = [SignalChange(c.kind, with_stored_evidence(c.signal))
                                   for c in analysis.signals.changes]
    latest: dict[str, Signal] = {}
    for change in changes:
        latest[change.signal.signal_id] = change.signal
    for sig in analysis.signals.touched:
        if sig.signal_id not in latest or latest[sig.signal_id].version <= sig.version:
            latest[sig.signal_id] = with_stored_evidence(sig)
    existing = {sid: v for sid, v in session.execute(sa.select(
        SignalRow.signal_id, SignalRow.version).where(
        SignalRow.tenant_id == analysis.tenant_id,
        SignalRow.signal_id.in_(list(latest)))).all()} if latest else {}
    # Resolved rows first, so a re-created signal never meets its predecessor in the
    # one-active-per-class index.
    fresh = [s for s in latest.values() if existing.get(s.signal_id, -1) <= s.version]
    for active in (False, True):  # never go back to an older version (filtered above)
        upsert(session, table_of(SignalRow),
               [_signal_row(s, meta, correlation_id) for s in fresh
                if (s.status == "active") is active], ["tenant_id", "signal_id"])
    version_rows, outbox_rows = [], []
    for change in changes:
        sig = change.signal
        if existing.get(sig.signal_id, 0) >= sig.version:
            continue  # this version was stored by an earlier run
        payload = signal_payload(sig, correlation_id)
        version_rows.append({"signal_id": sig.signal_id, "version": sig.version,
                             "tenant_id": sig.tenant_id, "change": change.kind,
                             "snapshot": payload, "changed_at": sig.updated_at})
        outbox_rows.append({
            "signal_id": sig.signal_id, "version": sig.version, "tenant_id": sig.tenant_id,
            "routing_key": routing_key(sig), "payload": payload,
            # With the run's traceparent (tracing on): the publish span continues this trace.
            "headers": tracing.inject({"tenant_id": sig.tenant_id,
                                       "correlation_id": correlation_id,
                                       "schema_version": STREAM_SCHEMA_VERSION}),
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
        if change.kind == "created":
            SIGNALS_GENERATED.labels(sig.tenant_id, sig.dimension, sig.signal_type).inc()
        if sig.actor_scope in ("team", "tenant") and \
                SEVERITY_RANK[sig.severity] >= SEVERITY_RANK["WARN"]:
            _signal_receipt(session, sig, change.kind, config, now)
    for part in bulk.chunks(version_rows, 1000):
        session.execute(dialect_insert(session, SignalVersion.__table__).values(list(part))
                        .on_conflict_do_nothing(index_elements=outbox.VERSION_KEY))
    outbox.insert_signal_versions(session, outbox_rows)
    outcome.signal_versions += len(version_rows)
    if outbox_rows:  # publish soon rather than at the next beat tick
        enqueue_followup(session, names.DRAIN_SIGNAL_OUTBOX, tenant_id=analysis.tenant_id,
                         kwargs={}, dedupe_key="publish", correlation_id=correlation_id)


def _signal_receipt(session: Session, sig: Signal, kind: str, config: TenantConfig,
                    now: datetime) -> None:
    resolved = sig.status == "resolved"
    receipt = receipts.build_receipt(
        receipt_id=receipts.signal_receipt_id(sig.signal_id, sig.version),
        tenant_id=sig.tenant_id, resource_type="signal", evaluation_point="post-deploy",
        config_version=config.version, snapshot_hash=config.snapshot_hash,
        inputs={"signal_class": sig.signal_class, "actor_scope": sig.actor_scope,
                "subject_id": sig.subject_id, "dimension": sig.dimension,
                "change": kind, "feature_ids": list(sig.evidence_refs.get("feature_ids", []))
                [:20]},
        decision={"status": "pass" if resolved else "warn",
                  "rationale": ("resolved: " if resolved else "") + sig.reason[:500],
                  "badges": [sig.signal_type, sig.severity, sig.signal_class]},
        result={"signal_id": sig.signal_id, "version": sig.version, "status": sig.status,
                "severity": sig.severity, "score": round(float(sig.score), 3)},
        actor_type="service", repo_id=f"ubi:{sig.tenant_id}", timestamp=now,
        evidence_handles=evidence.handles_of(sig.evidence_refs))
    receipts.enqueue_receipt(session, receipt, resource_id=f"{sig.signal_id}:{sig.version}",
                             now=now)

