"""The features invariant (SPEC §9, "Arrival order"): stored feature rows equal what a
from-scratch run of the pure analytics library writes for the stored events.

``check_features`` reads a tenant's stored events (not its rollups, focus or features), rolls
them up, pairs its focus sessions and computes every feature of every scope with the pure
library (``rollups.build_daily_activity``, ``focus.focus_by_day``, ``engine.tenant_features``),
then compares with the stored rows:

- on the days the tenant has evaluated (``first_evaluated_day`` to ``last_evaluated_day``)
  every row must be there: a row missing, an extra one or a value different beyond float
  rounding is a difference;
- on other days (before the first evaluation, and the open days since the last) the rows
  that are stored must be right (no extra row, no different value); rows of open days appear
  as their events arrive and the days close.

Both sides use the tenant's current config and its recorded ingestion gaps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.calendar import day_from_number, day_number
from ubi.analytics.engine import tenant_features
from ubi.analytics.events import BehaviouralEvent
from ubi.analytics.focus import focus_of_events
from ubi.analytics.rollups import build_daily_activity
from ubi.analytics.taxonomy import WINDOWS
from ubi.models import Event, IngestionState
from ubi.services import configs
from ubi.store import features as feature_store
from ubi.store.activity import incomplete_days

#: (scope, subject, feature, window, day) of a feature value.
RowKey = tuple[str, str, str, str, date]
#: Values closer than this (relative, or absolute near zero) are equal: float rounding of sums
#: taken in another order.
TOLERANCE = 1e-9
#: Examples of each kind of difference kept in a report.
EXAMPLES = 10


@dataclass(frozen=True)
class RowDifference:
    scope: str
    subject_id: str
    feature_name: str
    window: str
    day: date
    stored: float | None
    expected: float | None

    def describe(self) -> str:
        return (f"{self.scope} {self.subject_id[:12]} {self.feature_name} {self.window} "
                f"{self.day}: stored {_fmt(self.stored)}, expected {_fmt(self.expected)}")


@dataclass
class FeatureCheck:
    """What ``check_features`` found for one tenant."""

    tenant_id: str
    first_day: date | None = None
    last_day: date | None = None
    evaluated_from: date | None = None
    evaluated_through: date | None = None
    compared: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    examples: dict[str, list[RowDifference]] = field(
        default_factory=lambda: {"missing": [], "extra": [], "different": []})

    @property
    def consistent(self) -> bool:
        return self.missing == self.extra == self.different == 0

    def summary(self) -> str:
        if self.first_day is None:
            return f"{self.tenant_id}: no stored features to check"
        head = (f"{self.tenant_id}: {self.compared} feature rows compared from {self.first_day} "
                f"to {self.last_day} (evaluated {self.evaluated_from} to "
                f"{self.evaluated_through})")
        if self.consistent:
            return f"{head}: features consistent"
        lines = [f"{head}: {self.missing} missing, {self.extra} extra, "
                 f"{self.different} different"]
        for kind, rows in self.examples.items():
            lines += [f"  {kind}: {r.describe()}" for r in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "consistent": self.consistent,
            "first_day": _iso(self.first_day), "last_day": _iso(self.last_day),
            "evaluated_from": _iso(self.evaluated_from),
            "evaluated_through": _iso(self.evaluated_through), "compared": self.compared,
            "missing": self.missing, "extra": self.extra, "different": self.different,
            "examples": {k: [r.describe() for r in v] for k, v in self.examples.items()},
        }

    def _note(self, kind: str, row: RowDifference) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(row)


def check_features(session: Session, tenant_id: str, *, now: datetime | None = None
                   ) -> FeatureCheck:
    """Compare the tenant's stored feature rows with a from-scratch computation."""
    now = now or clock.utcnow()
    report = FeatureCheck(tenant_id)
    state = session.get(IngestionState, tenant_id)
    if state is not None and state.last_evaluated_day is not None:
        report.evaluated_from = state.first_evaluated_day
        report.evaluated_through = state.last_evaluated_day
    first_stored = feature_store.first_day(session, tenant_id)
    starts = [d for d in (first_stored, report.evaluated_from) if d is not None]
    last_event = session.execute(sa.select(sa.func.max(Event.event_date)).where(
        Event.tenant_id == tenant_id)).scalar_one()
    if not starts or last_event is None:
        return report
    report.first_day = min(starts)
    report.last_day = max(now.date(), last_event)
    expected = _expected_rows(session, tenant_id, report.first_day, report.last_day)
    must_exist = (report.evaluated_from, report.evaluated_through)
    seen: set[RowKey] = set()
    for r in feature_store.records(session, tenant_id, first=report.first_day):
        scope, subject, name, window, day, value = (
            r.actor_scope, r.subject_id, r.feature_name, r.window, r.day, r.value)
        key = (scope, subject, name, window, day)
        report.compared += 1
        seen.add(key)
        if key not in expected:
            report._note("extra", RowDifference(scope, subject, name, window, day, value, None))
        elif not _same(value, want := expected[key]):
            report._note("different", RowDifference(scope, subject, name, window, day, value,
                                                    want))
    lo, hi = must_exist
    if lo is not None and hi is not None:
        for (scope, subject, name, window, day), value in expected.items():
            if lo <= day <= hi and (scope, subject, name, window, day) not in seen:
                report._note("missing", RowDifference(scope, subject, name, window, day, None,
                                                      value))
    return report


def _expected_rows(session: Session, tenant_id: str, first_day: date, last_day: date
                   ) -> dict[RowKey, float | None]:
    """(scope, subject, name, window, day) -> value of a from-scratch computation over
    [first_day, last_day]."""
    config = configs.load_config(session, tenant_id, cached=False)
    # Whole windows on the first day, and the day before it for focus sessions ending on it.
    start = first_day - timedelta(days=max(WINDOWS.values()))
    events = list(stored_events(session, tenant_id, start, last_day))
    focus = focus_of_events(events)
    activity = build_daily_activity(events, config, start_day=start, end_day=last_day,
                                    focus=focus)
    incomplete = incomplete_days(session, tenant_id, start, last_day)
    tables = tenant_features(activity, config, tenant_id=tenant_id,
                             incomplete_days=incomplete, from_day=day_number(first_day))
    return {(table.scope, subject, name, table.window, day_from_number(day)): value
            for table in tables for subject, day, name, value in table.iter_values()}


def stored_events(session: Session, tenant_id: str, start: date, end: date
                  ) -> Iterator[BehaviouralEvent]:
    """The tenant's stored events of [start, end] as the pure library's events."""
    e = Event
    query = sa.select(e.event_id, e.actor_id, e.actor_type, e.team_id, e.source_system,
                      e.event_type, e.timestamp_utc, e.utc_offset_minutes, e.ingested_at,
                      e.properties, e.schema_version).where(
        e.tenant_id == tenant_id, e.event_date >= start, e.event_date <= end)
    for r in session.execute(query.execution_options(yield_per=10_000)):
        yield BehaviouralEvent(
            event_id=r.event_id, tenant_id=tenant_id, actor_id=r.actor_id,
            actor_type=r.actor_type, team_id=r.team_id, source_system=r.source_system,
            event_type=r.event_type, timestamp_utc=r.timestamp_utc,
            epoch_s=int(r.timestamp_utc.timestamp()), utc_offset_minutes=r.utc_offset_minutes,
            ingested_at=r.ingested_at, properties=r.properties or {}, resource={},
            privacy_tags=[], schema_version=r.schema_version)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _fmt(v: float | None) -> str:
    return "none" if v is None else f"{v:g}"


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None
