"""Feature storage: one row per subject and day (``feature_days``), read as SPEC §5.1 records.

A row holds every feature value of one (tenant, scope, subject, day) for every window: one
column per window (``WINDOW_COLUMNS``), null when the window has no values that day
(``scopes.stored_cells``), else one byte of metadata (``PARTIAL``: whether ``metadata.partial``
is present, and its value) and little-endian doubles: the window's confidence, then the values
of the window's features in ``taxonomy.FEATURES`` order (``SLOTS``; NaN = null). Everything
else of a record is derived: the feature id (``ids.feature_id``, as before), the window
bounds (from the day and the window), the dimension, unit and volume flag (from the taxonomy).
One row replaced 53 rows of the table ``features`` (each with a UUID key, window bounds, JSON
metadata and two indexes), 28 to 32 times the bytes (docs/benchmarks/pipeline.md).

``write`` is the one writer (a bulk upsert whose merge of windows is done by the statement,
so concurrent writers of one subject-day never lose each other's windows); ``records`` is the
reader, ``subject_window`` its shortcut for one subject's window of one day (a profile).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import cache, cached_property, lru_cache
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.calendar import day_from_number, day_number
from ubi.analytics.ids import feature_id, feature_ids
from ubi.analytics.results import FeatureTable
from ubi.analytics.taxonomy import FEATURES, WINDOWS, FeatureSpec
from ubi.models import FeatureDay, table_of
from ubi.models.session import is_postgres
from ubi.store import bulk

#: The column of each window.
WINDOW_COLUMNS: dict[str, str] = {"24h": "w24h", "7d": "w7d", "28d": "w28d"}
#: The ``FEATURES`` indexes whose values a window's column holds, in order.
SLOTS: dict[str, tuple[int, ...]] = {
    w: tuple(i for i, f in enumerate(FEATURES) if w in f.windows) for w in WINDOWS}
_SLOT_NAMES = {w: [FEATURES[i].name for i in slots] for w, slots in SLOTS.items()}
#: The metadata byte: ``metadata.partial`` absent, false or true.
PARTIAL: dict[bool | None, int] = {None: 0, False: 1, True: 2}
_PARTIAL_OF = {v: k for k, v in PARTIAL.items()}
KEY = ("tenant_id", "actor_scope", "subject_id", "day")

#: How a write meets a stored row: ``update`` replaces the windows it writes and keeps the
#: others; ``fill`` adds only the windows the row lacks; ``replace`` replaces the whole row.
Mode = Literal["update", "fill", "replace"]


def pack(confidence: float, values: Iterable[float | None], partial: bool | None = None
         ) -> bytes:
    """One window's stored value: metadata byte, confidence, values (None = null)."""
    floats = [confidence, *(np.nan if v is None else v for v in values)]
    return bytes([PARTIAL[partial]]) + np.asarray(floats, dtype="<f8").tobytes()


def unpack(packed: bytes) -> tuple[bool | None, float, np.ndarray]:
    """(partial, confidence, values) of one window's stored value."""
    floats = np.frombuffer(packed, dtype="<f8", offset=1)
    return _PARTIAL_OF[packed[0]], float(floats[0]), floats[1:]


@dataclass(frozen=True)
class FeatureRecord:
    """One feature value (SPEC §5.1)."""

    tenant_id: str
    actor_scope: str
    subject_id: str
    feature_name: str
    dimension: str
    window: str
    day: date
    value: float | None
    confidence: float
    partial: bool | None
    computed_at: datetime

    @cached_property
    def feature_id(self) -> str:
        return feature_id(self.tenant_id, self.actor_scope, self.subject_id,
                          self.feature_name, self.window, day_number(self.day))

    @property
    def window_start(self) -> datetime:
        return _bounds(self.day, self.window)[0]

    @property
    def window_end(self) -> datetime:
        return _bounds(self.day, self.window)[1]

    @property
    def metadata(self) -> dict[str, Any]:
        spec = FEATURES[_FEATURE_INDEX[self.feature_name]]
        meta: dict[str, Any] = {"volume_only": spec.volume_only, "unit": spec.unit}
        if self.partial is not None:
            meta["partial"] = self.partial
        return meta


_FEATURE_INDEX = {f.name: i for i, f in enumerate(FEATURES)}


@lru_cache(maxsize=4096)
def _bounds(day: date, window: str) -> tuple[datetime, datetime]:
    start = day - timedelta(days=WINDOWS[window] - 1)
    return (datetime.combine(start, dtime(), tzinfo=UTC),
            datetime.combine(day + timedelta(days=1), dtime(), tzinfo=UTC))


def write(session: Session, tables: Iterable[FeatureTable], *, now: datetime,
          scopes: Container[str] | None = None, mode: Mode = "update",
          partial_from: int | None = None) -> int:
    """Store the cells that exist in the engine's feature tables (of ``scopes``), one row per
    subject-day with the windows of every table given; returns the number of feature values.
    ``partial_from``: the cells of that UTC day number on get ``metadata.partial`` true, the
    others false (the features step's rows; without it there is no such key).

    Idempotent (``INSERT ... ON CONFLICT DO UPDATE``); a row is only rewritten when a value
    changes, and ``computed_at`` (``now``, timezone-aware) then."""
    rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    dates: dict[int, date] = {}
    n_values = 0
    for table in tables:
        if scopes is not None and table.scope not in scopes:
            continue
        cells_s, cells_e = np.nonzero(table.exists)
        if not len(cells_s):
            continue
        column = WINDOW_COLUMNS[table.window]
        slots = list(SLOTS[table.window])
        # Every cell's stored value at once: the metadata byte, then the doubles (``pack``).
        packed = np.empty(len(cells_s), dtype=[("flag", "u1"), ("v", "<f8", (1 + len(slots),))])
        packed["v"][:, 0] = table.confidence[cells_s, cells_e]
        packed["v"][:, 1:] = table.values[cells_s, cells_e][:, slots]
        days = np.asarray(table.days)[cells_e]
        packed["flag"] = PARTIAL[None] if partial_from is None else np.where(
            days >= partial_from, PARTIAL[True], PARTIAL[False])
        values = packed.view(np.dtype((np.void, packed.dtype.itemsize))).tolist()
        n_values += len(cells_s) * len(slots)
        for s, day, value in zip(cells_s.tolist(), days.tolist(), values, strict=True):
            key = (table.tenant_id, table.scope, table.subject_ids[s], day)
            row = rows.get(key)
            if row is None:
                if day not in dates:
                    dates[day] = day_from_number(day)
                row = rows[key] = {
                    "tenant_id": key[0], "actor_scope": key[1], "subject_id": key[2],
                    "day": dates[day], "w24h": None, "w7d": None, "w28d": None,
                    "computed_at": now}
            row[column] = value
    windows = list(WINDOW_COLUMNS.values())
    if is_postgres(session):
        _upsert_pg(session, [rows[k] for k in sorted(rows)], mode)
        return n_values
    merge: dict[str, Any] = {
        "update": {"fill": windows}, "fill": {"fill_stored": windows},
        "replace": {"replace": windows}}[mode]
    bulk.upsert_replacing(session, table_of(FeatureDay), list(rows.values()), key_columns=KEY,
                          replace=[*merge.get("replace", ()), "computed_at"],
                          fill=merge.get("fill", ()), fill_stored=merge.get("fill_stored", ()),
                          changed=windows)
    return n_values


#: Each mode's new value of a window column ``w`` (``f``: the stored row).
_MERGE_PG: dict[str, str] = {"update": "COALESCE(EXCLUDED.{w}, f.{w})",
                             "fill": "COALESCE(f.{w}, EXCLUDED.{w})", "replace": "EXCLUDED.{w}"}
#: Rows per statement: a features run writes a few thousand, a full recompute millions.
_UPSERT_CHUNK = 5000


def _upsert_pg(session: Session, rows: list[dict[str, Any]], mode: Mode) -> None:
    """The rows upserted from arrays (one statement per chunk, in key order, as every writer
    of ``feature_days`` locks them): no temporary table to create, fill and truncate around
    each write, as the generic bulk upsert does for its millions of rows. A stored row is only
    rewritten when one of its windows changes."""
    windows = list(WINDOW_COLUMNS.values())
    new = {w: _MERGE_PG[mode].format(w=w) for w in windows}
    sql = (
        "INSERT INTO feature_days AS f (tenant_id, actor_scope, subject_id, day, "
        f"{', '.join(windows)}, computed_at) SELECT u.*, %(now)s FROM unnest("
        "%(t)b::varchar[], %(s)b::varchar[], %(id)b::varchar[], %(d)b::date[], "
        f"{', '.join(f'%({w})b::bytea[]' for w in windows)}) AS u "
        "ON CONFLICT (tenant_id, actor_scope, subject_id, day) DO UPDATE SET "
        + ", ".join(f"{w} = {e}" for w, e in new.items())
        + ", computed_at = EXCLUDED.computed_at WHERE "
        + " OR ".join(f"f.{w} IS DISTINCT FROM {e}" for w, e in new.items()))
    raw = session.connection().connection.driver_connection
    assert raw is not None  # the session's live connection always has its driver connection
    with raw.cursor() as cur:
        for part in bulk.chunks(rows, _UPSERT_CHUNK):
            cur.execute(sql, {
                "now": part[0]["computed_at"], "t": [r["tenant_id"] for r in part],
                "s": [r["actor_scope"] for r in part], "id": [r["subject_id"] for r in part],
                "d": [r["day"] for r in part], **{w: [r[w] for r in part] for w in windows}})


def records(session: Session, tenant_id: str, *, scopes: Collection[str] | None = None,
            subject_id: str | None = None, first: date | None = None,
            last: date | None = None, windows: Collection[str] | None = None,
            batch: int = 2000) -> Iterator[FeatureRecord]:
    """The tenant's stored feature records (of ``scopes``, one subject, days in [first,
    last], ``windows``), by day, scope and subject, then window and feature in taxonomy
    order; read in batches (constant memory over years) unless the read is one subject's."""
    f = FeatureDay
    wanted = [w for w in WINDOWS if windows is None or w in windows]
    query = sa.select(f.actor_scope, f.subject_id, f.day, f.computed_at,
                      *(getattr(f, WINDOW_COLUMNS[w]) for w in wanted)).where(
        f.tenant_id == tenant_id)
    if scopes is not None:
        # One scope (a profile's read) is an equality: an IN list is rendered per execution.
        wanted_scopes = list(scopes)
        query = query.where(f.actor_scope == wanted_scopes[0] if len(wanted_scopes) == 1
                            else f.actor_scope.in_(wanted_scopes))
    if subject_id is not None:
        query = query.where(f.subject_id == subject_id)
    if first is not None:
        query = query.where(f.day >= first)
    if last is not None:
        query = query.where(f.day <= last)
    query = query.order_by(f.day, f.actor_scope, f.subject_id)
    specs = {w: [FEATURES[i] for i in SLOTS[w]] for w in wanted}
    if subject_id is None:
        # A server-side cursor costs three round trips: worth it for a tenant's years of
        # rows, not for one subject's (a profile reads one row).
        query = query.execution_options(yield_per=batch)
    for row in session.execute(query):
        scope: str = row[0]
        subject: str = row[1]
        day: date = row[2]
        computed_at: datetime = row[3]
        packed: bytes | None
        for window, packed in zip(wanted, row[4:], strict=True):
            if packed is None:
                continue
            partial, confidence, values = unpack(bytes(packed))
            for spec, v in zip(specs[window], values.tolist(), strict=True):
                yield FeatureRecord(
                    tenant_id=tenant_id, actor_scope=scope, subject_id=subject,
                    feature_name=spec.name, dimension=spec.dimension, window=window, day=day,
                    value=None if v != v else v, confidence=confidence, partial=partial,
                    computed_at=computed_at)


@cache
def _window_of_day(window: str) -> sa.Select[Any]:
    f = FeatureDay
    return sa.select(getattr(f, WINDOW_COLUMNS[window])).where(
        f.tenant_id == sa.bindparam("tenant_id"), f.actor_scope == sa.bindparam("scope"),
        f.subject_id == sa.bindparam("subject_id"), f.day == sa.bindparam("day"))


def subject_window(session: Session, tenant_id: str, scope: str, subject_id: str, day: date,
                   window: str) -> tuple[float, list[tuple[FeatureSpec, str, float | None]]]:
    """One subject's values of one window on one day (a profile's read): the window's
    confidence and (spec, feature id, value) in taxonomy order; no values when none stored.
    The same values and ids as ``records``, without a record object per value."""
    packed = session.execute(_window_of_day(window), {
        "tenant_id": tenant_id, "scope": scope, "subject_id": subject_id, "day": day,
    }).scalar_one_or_none()
    if packed is None:
        return math.nan, []
    _, confidence, values = unpack(bytes(packed))
    slots = SLOTS[window]
    n = len(slots)
    ids = feature_ids(tenant_id, scope, window, [subject_id], _SLOT_NAMES[window],
                      np.zeros(n), np.arange(n), np.full(n, day_number(day)))
    return confidence, [(FEATURES[i], fid.decode(), None if v != v else v)
                        for i, fid, v in zip(slots, ids.tolist(), values.tolist(),
                                             strict=True)]


def first_day(session: Session, tenant_id: str) -> date | None:
    """The tenant's first day with stored features."""
    return session.execute(sa.select(sa.func.min(FeatureDay.day)).where(
        FeatureDay.tenant_id == tenant_id)).scalar_one()


def delete_missing(session: Session, tenant_id: str, first: date, last: date,
                   tables: Iterable[FeatureTable]) -> int:
    """Delete the tenant's rows of [first, last] that none of ``tables`` has a cell of (a
    full recompute's rows that must not exist); returns the number of rows deleted."""
    kept: set[tuple[str, str, date]] = set()
    for table in tables:
        cells_s, cells_e = np.nonzero(table.exists)
        days = [day_from_number(d) for d in np.asarray(table.days)[cells_e].tolist()]
        kept.update((table.scope, table.subject_ids[s], d)
                    for s, d in zip(cells_s.tolist(), days, strict=True))
    f = FeatureDay
    stored = session.execute(sa.select(f.actor_scope, f.subject_id, f.day).where(
        f.tenant_id == tenant_id, f.day >= first, f.day <= last)).all()
    gone = [tuple(k) for k in stored if tuple(k) not in kept]
    key = sa.tuple_(f.actor_scope, f.subject_id, f.day)
    done = 0
    for part in bulk.chunks(gone, 2000):
        result = session.execute(sa.delete(f).where(f.tenant_id == tenant_id,
                                                    key.in_(list(part))),
                                 execution_options={"synchronize_session": False})
        done += int(getattr(result, "rowcount", 0) or 0)
    return done
