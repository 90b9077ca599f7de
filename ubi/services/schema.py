"""Database schema management through Alembic (the only way the schema changes)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from ubi.settings import Settings, get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(settings: Settings | None = None) -> Config:
    settings = settings or get_settings()
    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        raise FileNotFoundError(f"{ini} not found: run UBI from a checkout (pip install -e .)")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.attributes["url"] = settings.database_url
    return cfg


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from ubi.models.session import get_engine

    with get_engine(settings).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
