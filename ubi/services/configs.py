"""Tenant configuration: the current version of each tenant's config (SPEC §10)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.tenant_config import ConfigError, TenantConfig, config_hash
from ubi.models import TenantConfigVersion

#: Seconds a worker may reuse a tenant's config before looking for a newer version.
CACHE_SECONDS = 5.0
_cache: dict[tuple[str, str], tuple[float, TenantConfig]] = {}
_cache_lock = threading.Lock()


def current_config_row(session: Session, tenant_id: str) -> TenantConfigVersion | None:
    return session.execute(
        sa.select(TenantConfigVersion)
        .where(TenantConfigVersion.tenant_id == tenant_id, TenantConfigVersion.kind == "applied")
        .order_by(TenantConfigVersion.version.desc()).limit(1)
    ).scalar_one_or_none()


def load_config(session: Session, tenant_id: str, *, cached: bool = True) -> TenantConfig:
    """The tenant's current config (defaults, version 0, when it never stored one)."""
    # sessions here are bound to an engine
    key = (str(cast(sa.Engine, session.get_bind()).url), tenant_id)
    now = time.monotonic()
    if cached:
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    row = current_config_row(session, tenant_id)
    config = TenantConfig(dict(row.config), row.version) if row else TenantConfig.default()
    with _cache_lock:
        _cache[key] = (now, config)
    return config


def invalidate(tenant_id: str | None = None) -> None:
    with _cache_lock:
        for key in [k for k in _cache if tenant_id is None or k[1] == tenant_id]:
            _cache.pop(key, None)


def describe(config: TenantConfig) -> dict[str, Any]:
    return {"version": config.version, "config": config.raw,
            "snapshot_hash": config.snapshot_hash}


def save_config(session: Session, tenant_id: str, document: dict[str, Any], *, author: str,
                reason: str | None = None) -> TenantConfigVersion:
    """Validate ``document`` and store it as the tenant's next version (raises ConfigError)."""
    from ubi.analytics.tenant_config import config_diff, validate_config
    from ubi.models import utcnow

    config = validate_config(document)
    current = current_config_row(session, tenant_id)
    previous = dict(current.config) if current else TenantConfig.default().raw
    row = TenantConfigVersion(
        tenant_id=tenant_id, version=next_version(session, tenant_id), kind="applied",
        status="active", config=config, diff=config_diff(previous, config), author=author,
        created_at=utcnow(), snapshot_hash=config_hash(config), reason=reason)
    session.add(row)
    session.flush()
    invalidate(tenant_id)
    return row


@dataclass
class ConfigChange:
    """What a config write did: a new version, or a rejection recorded as one (SPEC §10)."""

    accepted: bool
    version: int
    config: dict[str, Any]
    receipt_id: str
    errors: dict[str, str] = field(default_factory=dict)


def change_config(session: Session, tenant_id: str, document: Any, *, author: str,
                  now: datetime, reason: str | None = None) -> ConfigChange:
    """Validate ``document``; store it as the tenant's next version, or record the rejected
    attempt; either way emit a config receipt into the receipt outbox (SPEC §13)."""
    from ubi.services import receipts, threshold_tuning

    current = load_config(session, tenant_id, cached=False)
    receipt_id = str(uuid.uuid4())
    try:
        row = save_config(session, tenant_id, document, author=author, reason=reason)
    except ConfigError as exc:
        version = next_version(session, tenant_id)
        session.add(TenantConfigVersion(
            tenant_id=tenant_id, version=version, kind="rejected", status="rejected",
            config=document if isinstance(document, dict) else {"document": document},
            diff=[], author=author, created_at=now, snapshot_hash=current.snapshot_hash,
            receipt_id=receipt_id, reason="; ".join(f"{k}: {v}" for k, v in
                                                    exc.errors.items())[:2000]))
        receipt = receipts.build_receipt(
            receipt_id=receipt_id, tenant_id=tenant_id, resource_type="config",
            evaluation_point="config", config_version=current.version,
            snapshot_hash=current.snapshot_hash,
            inputs={"fields": sorted(exc.errors), "attempt_version": version},
            decision={"status": "warn", "rationale": f"config rejected: {exc}",
                      "badges": ["config", "rejected"]},
            result={"accepted": False, "version": current.version, "errors": exc.errors},
            actor_type="human", repo_id=f"ubi:{tenant_id}", timestamp=now)
        receipts.enqueue_receipt(session, receipt, resource_id=f"config:{version}", now=now)
        return ConfigChange(False, current.version, current.raw, receipt_id, exc.errors)
    receipt = receipts.build_receipt(
        receipt_id=receipt_id, tenant_id=tenant_id, resource_type="config",
        evaluation_point="config", config_version=row.version,
        snapshot_hash=row.snapshot_hash,
        inputs={"changed": [change["path"] for change in row.diff][:200],
                "previous_version": current.version},
        decision={"status": "pass", "rationale": f"config version {row.version} stored "
                  f"({len(row.diff)} changes)", "badges": ["config"]},
        result={"accepted": True, "version": row.version},
        actor_type="human", repo_id=f"ubi:{tenant_id}", timestamp=now)
    receipts.enqueue_receipt(session, receipt, resource_id=f"config:{row.version}", now=now)
    row.receipt_id = receipt_id
    threshold_tuning.settle(session, tenant_id, row.config)
    return ConfigChange(True, row.version, dict(row.config), receipt_id)


def config_versions(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    """Every stored version, applied or rejected, newest first: who, when, what changed."""
    rows = session.execute(sa.select(TenantConfigVersion).where(
        TenantConfigVersion.tenant_id == tenant_id)
        .order_by(TenantConfigVersion.version.desc())).scalars()
    return [{"version": r.version, "kind": r.kind, "status": r.status, "author": r.author,
             "created_at": r.created_at, "diff": r.diff or [], "reason": r.reason,
             "snapshot_hash": r.snapshot_hash, "receipt_id": r.receipt_id,
             "config": r.config if r.kind == "suggestion" else None} for r in rows]


def next_version(session: Session, tenant_id: str) -> int:
    latest = session.execute(sa.select(sa.func.max(TenantConfigVersion.version)).where(
        TenantConfigVersion.tenant_id == tenant_id)).scalar_one()
    return int(latest or 0) + 1
