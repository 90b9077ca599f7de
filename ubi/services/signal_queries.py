"""Reading signals (SPEC §5.5, §6 ``POST /query/signals``, ``GET /signals/recent``).

Signals are returned as the documents SPEC §5.5 defines. Classes the tenant's config
disables are never returned, whenever they were stored. A reader who may not see actors gets
no actor signal, and no pseudonym anywhere in what it does get (``conceal_actors``).

Pages are newest first by (``created_at``, ``signal_id``) with a keyset cursor: a signal
stored while a reader walks the pages is older than none of the ones still to come, so every
signal is returned exactly once, in order.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.taxonomy import SEVERITY_RANK, SIGNAL_CLASS_BY_NAME
from ubi.analytics.tenant_config import TenantConfig
from ubi.models import Signal

SCOPES = ("actor", "team", "cohort", "tenant")
STATUSES = ("active", "resolved")
MAX_PAGE = 500
#: A stored actor pseudonym (HMAC-SHA256, hex).
PSEUDONYM = re.compile(r"\b[0-9a-f]{64}\b")
CONCEALED = "(actor)"


class CursorError(ValueError):
    """A cursor this service did not issue."""


@dataclass
class SignalFilters:
    """What ``POST /query/signals`` filters on (every field optional)."""

    scopes: Sequence[str] = SCOPES
    dimensions: Sequence[str] = ()
    time_from: date | None = None
    time_to: date | None = None
    min_severity: str | None = None
    subject_ids: Sequence[str] = ()  # actor pseudonyms or group ids
    team_ids: Sequence[str] = ()
    signal_types: Sequence[str] = ()
    status: str | None = None


@dataclass
class SignalPage:
    signals: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def enabled_classes(config: TenantConfig) -> list[str]:
    return [name for name in SIGNAL_CLASS_BY_NAME if config.signal_class_enabled(name)]


def class_conditions(config: TenantConfig) -> list[sa.ColumnElement[bool]]:
    """The condition that keeps classes the tenant disabled out (FM-UBI-01); none when every
    class is enabled, the usual case: an IN list is rendered again on every execution."""
    enabled = enabled_classes(config)
    return [Signal.signal_class.in_(enabled)] if len(enabled) < len(SIGNAL_CLASS_BY_NAME) else []


def conceal_actors(value: Any) -> Any:
    """``value`` with every actor pseudonym replaced (readers without ``ubi:read:actor``)."""
    if isinstance(value, str):
        return PSEUDONYM.sub(CONCEALED, value)
    if isinstance(value, dict):
        return {conceal_actors(k): conceal_actors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [conceal_actors(v) for v in value]
    return value


#: The columns of a signal document (SPEC §5.5), read as plain rows: ORM entities would cost
#: more Python per page than the query itself.
DOCUMENT_COLUMNS = (
    "signal_id", "tenant_id", "actor_scope", "subject_id", "team_id", "dimension",
    "signal_class", "signal_type", "score", "severity", "confidence", "status", "reason",
    "evidence_refs", "features_snapshot", "intent", "expected_outcome", "day", "first_day",
    "created_at", "updated_at", "resolved_at", "version")
_SELECT_DOCUMENT = sa.select(*(getattr(Signal, c) for c in DOCUMENT_COLUMNS))


def signal_document(row: sa.RowMapping, *, sees_actors: bool,
                    actor_id: str | None = None) -> dict[str, Any]:
    """A stored signal as SPEC §5.5 shapes it (with ``actor_id``, the reader's original id,
    when the reader named the actor)."""
    doc: dict[str, Any] = dict(row)
    doc["evidence_refs"] = doc["evidence_refs"] or {}
    doc["features_snapshot"] = doc["features_snapshot"] or {}
    if actor_id is not None:
        doc["actor_id"] = actor_id
    return doc if sees_actors else conceal_actors(doc)


def query_signals(session: Session, tenant_id: str, config: TenantConfig,
                  filters: SignalFilters, *, sees_actors: bool, page_size: int = 100,
                  cursor: str | None = None) -> SignalPage:
    """One page of the tenant's signals matching ``filters``, newest first."""
    s = Signal
    scopes = [sc for sc in filters.scopes if sees_actors or sc != "actor"]
    conditions = [s.tenant_id == tenant_id, *class_conditions(config)]
    if set(scopes) != set(SCOPES):  # every scope (the usual query): no IN list to render
        conditions.append(s.actor_scope.in_(scopes))
    if filters.dimensions:
        conditions.append(s.dimension.in_(list(filters.dimensions)))
    if filters.signal_types:
        conditions.append(s.signal_type.in_(list(filters.signal_types)))
    if filters.status:
        conditions.append(s.status == filters.status)
    if filters.min_severity:
        floor = SEVERITY_RANK[filters.min_severity]
        conditions.append(s.severity.in_([v for v, r in SEVERITY_RANK.items() if r >= floor]))
    if filters.subject_ids:
        conditions.append(s.subject_id.in_(list(filters.subject_ids)))
    if filters.team_ids:
        conditions.append(s.team_id.in_(list(filters.team_ids)))
    # A signal spans its first day to the day it last fired (or was resolved).
    if filters.time_to is not None:
        conditions.append(sa.func.coalesce(s.first_day, s.day) <= filters.time_to)
    if filters.time_from is not None:
        conditions.append(sa.func.coalesce(s.last_fired_day, s.day) >= filters.time_from)
    if cursor:
        created, signal_id = decode_cursor(cursor)
        conditions.append(sa.or_(s.created_at < created,
                                 sa.and_(s.created_at == created, s.signal_id < signal_id)))
    size = max(1, min(page_size, MAX_PAGE))
    rows = session.execute(_SELECT_DOCUMENT.where(*conditions)
                           .order_by(s.created_at.desc(), s.signal_id.desc())
                           .limit(size + 1)).mappings().all()
    page = SignalPage([signal_document(r, sees_actors=sees_actors) for r in rows[:size]])
    if len(rows) > size:
        last = rows[size - 1]
        page.next_cursor = encode_cursor(last["created_at"], last["signal_id"])
    return page


def recent_signals(session: Session, tenant_id: str, config: TenantConfig, pseudonym: str,
                   *, actor_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest signals of one actor, newest first, each with the reader's ``actor_id``."""
    s = Signal
    rows = session.execute(_SELECT_DOCUMENT.where(
        s.tenant_id == tenant_id, s.actor_scope == "actor", s.subject_id == pseudonym,
        *class_conditions(config))
        .order_by(s.updated_at.desc(), s.signal_id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))).mappings().all()
    return [signal_document(r, sees_actors=True, actor_id=actor_id) for r in rows]


#: Built once with bound parameters (a profile's read): building and keying the statement per
#: request cost more than executing it. No IN list by default: an expanding parameter is
#: rendered again on every execution.
_SUBJECT_SIGNALS = _SELECT_DOCUMENT.where(
    Signal.tenant_id == sa.bindparam("tenant_id"), Signal.actor_scope == sa.bindparam("scope"),
    Signal.subject_id == sa.bindparam("subject_id"),
    sa.or_(Signal.status == "active",
           sa.func.coalesce(Signal.last_fired_day, Signal.day) >= sa.bindparam("since"))
).order_by(Signal.updated_at.desc(), Signal.signal_id.desc()).limit(sa.bindparam("limit"))


def subject_signals(session: Session, tenant_id: str, config: TenantConfig, scope: str,
                    subject_id: str, *, since: date, sees_actors: bool,
                    limit: int = 100) -> list[dict[str, Any]]:
    """Active signals and those of the last days (from ``since``) of one subject."""
    query, disabled = _SUBJECT_SIGNALS, class_conditions(config)
    if disabled:  # else the prebuilt statement itself: its cache key is computed once
        query = query.where(*disabled)
    rows = session.execute(query, {
        "tenant_id": tenant_id, "scope": scope, "subject_id": subject_id, "since": since,
        "limit": limit}).mappings().all()
    return [signal_document(r, sees_actors=sees_actors) for r in rows]


def encode_cursor(created_at: datetime, signal_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), signal_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, signal_id = json.loads(raw)
        return datetime.fromisoformat(created), str(signal_id)
    except (ValueError, TypeError) as exc:
        raise CursorError("cursor is not one this API issued") from exc
