"""The PostgreSQL connection budget (issue 23; docs/deployment.md "Connection budget").

Every process keeps its own pool of up to ``UBI_DB_POOL_SIZE + UBI_DB_MAX_OVERFLOW``
connections: gunicorn's workers, and each prefork child of every Celery worker group. The sum
over a deployment must stay under PostgreSQL's ``max_connections`` less its reserved slots, or
the last processes to connect fail at their busiest moment. A process group checks its own
share when it starts, against what the server allows and what is already in use, and warns
in one line with the numbers (a deployment beyond one server's budget puts PgBouncer in front:
docker-compose.yml has one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from ubi.settings import Settings, get_settings

log = logging.getLogger("ubi.connections")


@dataclass(frozen=True)
class Budget:
    group: str
    processes: int
    per_process: int
    max_connections: int
    reserved: int
    in_use: int

    @property
    def planned(self) -> int:
        return self.processes * self.per_process

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved - self.in_use

    @property
    def fits(self) -> bool:
        return self.planned <= self.available

    def describe(self) -> str:
        return (f"{self.group}: {self.processes} processes x {self.per_process} connections "
                f"(UBI_DB_POOL_SIZE + UBI_DB_MAX_OVERFLOW) = {self.planned}; PostgreSQL "
                f"allows {self.max_connections}, {self.reserved} reserved, {self.in_use} in "
                f"use: {self.available} left")


def per_process(settings: Settings) -> int:
    return settings.db_pool_size + settings.db_max_overflow


def check_budget(group: str, processes: int, settings: Settings | None = None) -> Budget | None:
    """This group's share of the server's connections; logs a warning when it does not fit.
    None on the embedded SQLite store, or when the server cannot be asked (the group's own
    start reports that)."""
    settings = settings or get_settings()
    if not settings.is_postgres:
        return None
    from ubi.models.session import create_db_engine

    engine = create_db_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT current_setting('max_connections')::int, "
                "current_setting('superuser_reserved_connections')::int, "
                "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            )).one()
    except sa.exc.DBAPIError as exc:
        log.warning("connection budget not checked: %s", type(exc).__name__)
        return None
    finally:
        engine.dispose()
    budget = Budget(group, processes, per_process(settings), int(row[0]), int(row[1]),
                    # this check's own connection is not part of the deployment
                    max(int(row[2]) - 1, 0))
    if budget.fits:
        log.info("connection budget: %s", budget.describe())
    else:
        log.warning("connection budget exceeded: %s; lower UBI_DB_POOL_SIZE/"
                    "UBI_DB_MAX_OVERFLOW or the processes, raise max_connections, or put "
                    "PgBouncer in front (docs/deployment.md)", budget.describe())
    return budget
