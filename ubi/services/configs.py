"""Tenant configuration: the current version of each tenant's config (SPEC §10)."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.analytics.tenant_config import TenantConfig
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
    from ubi.analytics.tenant_config import config_diff, config_hash, validate_config
    from ubi.models import utcnow

    config = validate_config(document)
    current = current_config_row(session, tenant_id)
    previous = dict(current.config) if current else TenantConfig.default().raw
    latest = session.execute(
        sa.select(sa.func.max(TenantConfigVersion.version)).where(
            TenantConfigVersion.tenant_id == tenant_id)).scalar_one()
    row = TenantConfigVersion(
        tenant_id=tenant_id, version=(latest or 0) + 1, kind="applied", status="active",
        config=config, diff=config_diff(previous, config), author=author,
        created_at=utcnow(), snapshot_hash=config_hash(config), reason=reason)
    session.add(row)
    session.flush()
    invalidate(tenant_id)
    return row
