"""``upsert_baselines`` on PostgreSQL (binary COPY built column-wise) stores exactly the
engine's baseline rows: ids, strings of every length, exact doubles, NULL statistics, the
algorithm document, dates and timestamps; and it swaps only the analysed tenant's rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity
from ubi.analytics.calendar import day_from_number, day_number, workday_mask
from ubi.analytics.engine import analyse_tenant
from ubi.analytics.results import TenantAnalysis
from ubi.analytics.taxonomy import ROLLUP_COUNTER_COLUMNS
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Baseline
from ubi.services.detection import upsert_baselines

START = date(2024, 1, 1)
N_DAYS = 118  # history_days (90) + 28, as the nightly recompute loads
# Subject ids of different byte lengths (several record layouts), quotes, non-ASCII.
SUBJECTS = ["a" * 64, "b" * 64, "bob", 'q"uote', "ünïcödé-ñ", "emoji-\U0001f600", "x" * 200,
            "short", "c" * 64, "d" * 64, "e" * 64, "f" * 64]


def _activity() -> DailyActivity:
    rng = np.random.default_rng(5)
    n_s = len(SUBJECTS)
    workday = workday_mask(day_number(START) + np.arange(N_DAYS), TenantConfig.default())
    present = rng.random((n_s, N_DAYS)) < np.where(workday, 0.9, 0.15)[None, :]
    present[1, 25:] = False  # only old history: baselines without recent percentiles (NULL)
    counters = np.zeros((n_s, N_DAYS, len(ROLLUP_COUNTER_COLUMNS)))
    for i in range(3, len(ROLLUP_COUNTER_COLUMNS)):
        counters[:, :, i] = rng.poisson(1.7 * present * (1 + i % 3))
    total = counters[:, :, 3:].sum(axis=2)
    counters[:, :, COUNTER_INDEX["event_count"]] = total
    counters[:, :, COUNTER_INDEX["after_hours"]] = rng.binomial(total.astype(np.int64), 0.2)
    hours = np.where(total > 0, (1 << 9) | (1 << 14), 0).astype(np.int64)
    focus_n = rng.poisson(2.0 * (total > 0)).astype(float)
    focus_m = focus_n * rng.gamma(5.0, 9.7, (n_s, N_DAYS))
    teams: list[str | None] = ["red"] * 6 + ["blue"] * 5 + [None]
    return DailyActivity(list(SUBJECTS), ["human"] * n_s, teams, START, counters, hours,
                         focus_m, focus_n)


def _analysis(tenant: str, now: datetime) -> TenantAnalysis:
    last = day_number(START) + N_DAYS - 1
    return analyse_tenant(_activity(), TenantConfig.default(), tenant_id=tenant,
                          incomplete_days=None, evaluate_from_day=last, previous=None,
                          now=now, baselines_only=True)


def _stored(session: Session, tenant: str) -> dict[str, tuple[Any, ...]]:
    b = Baseline.__table__.c
    rows = session.execute(sa.select(
        b.baseline_id, b.tenant_id, b.actor_scope, b.subject_id, b.feature_name, b.window,
        b.day_type, b.mean, b.std_dev, b.p50, b.p90, b.p95, b.n_observations, b.confidence,
        b.algorithm, b.as_of_day, b.last_recomputed_at).where(b.tenant_id == tenant)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_binary_copy_stores_exactly_the_engine_rows(db_session: Session) -> None:
    now = datetime(2024, 4, 28, 3, 4, 5, 678901, tzinfo=UTC)
    analysis = _analysis("acme", now)
    written = upsert_baselines(db_session, analysis)
    db_session.commit()

    want = {r.baseline_id: (
        r.tenant_id, r.actor_scope, r.subject_id, r.feature_name, r.window, r.day_type,
        r.mean, r.std_dev, r.p50, r.p90, r.p95, r.n_observations, r.confidence,
        dict(r.algorithm), day_from_number(analysis.evaluated_days[-1]), now)
        for t in analysis.baselines for r in t.iter_rows()}
    got = _stored(db_session, "acme")
    assert written == len(want) == len(got)
    assert got == want  # floats compared exactly: the doubles travel as IEEE bytes
    assert any(v[8] is None for v in want.values())  # NULL percentiles were exercised
    assert {v[2] for v in got.values()} >= set(SUBJECTS) - {SUBJECTS[-1]}


def test_swap_replaces_only_the_tenant_rows(db_session: Session) -> None:
    then = datetime(2024, 4, 27, 3, tzinfo=timezone(timedelta(hours=2)))
    upsert_baselines(db_session, _analysis("acme", then))
    upsert_baselines(db_session, _analysis("globex", then))
    db_session.commit()
    globex = _stored(db_session, "globex")

    now = datetime(2024, 4, 28, 3, tzinfo=UTC)
    upsert_baselines(db_session, _analysis("acme", now))
    db_session.commit()
    acme = _stored(db_session, "acme")
    assert acme and {v[-1] for v in acme.values()} == {now}
    assert _stored(db_session, "globex") == globex
    assert {v[-1] for v in globex.values()} == {then}  # the same instant, another offset
