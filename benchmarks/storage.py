"""Bytes of feature storage per active subject-day on PostgreSQL (issue 19).

The feature rows of an embedded database (the SQLite file ``ubi demo`` leaves, e.g.
``.ubi/demo/demo.sqlite3``) are copied into a scratch PostgreSQL database at the revision
that holds them: ``features`` (before migration 0015, one row per value) or
``feature_days`` (one row per subject-day). The figure is ``pg_total_relation_size`` of the
table (heap, TOAST and indexes, after a VACUUM ANALYZE, as stored with its fillfactor) over
the subject-days that have features (distinct tenant, scope, subject, day). A database of
the old code is then migrated (0015 converts it, timed) and measured again.

Usage: ``ubi bench storage --sqlite FILE [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
import uuid
from typing import Any

import sqlalchemy as sa

from benchmarks import _harness

_SUBJECT_DAYS = {
    "features": "SELECT count(*) FROM (SELECT DISTINCT tenant_id, actor_scope, subject_id, day "
                "FROM features) d",
    "feature_days": "SELECT count(*) FROM feature_days",
}


def _copy(source: sqlite3.Connection, engine: sa.Engine, table: str) -> int:
    """Copy a table's rows from SQLite (timestamps naive UTC text) into PostgreSQL."""
    columns = [r[1] for r in source.execute(f'PRAGMA table_info("{table}")')]
    cols = ", ".join(f'"{c}"' for c in columns)
    n = 0
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                for row in source.execute(f'SELECT {cols} FROM "{table}"'):
                    copy.write_row(row)
                    n += 1
        raw.commit()  # on the driver's connection: SQLAlchemy began no transaction
    return n


def _measure(engine: sa.Engine, table: str) -> dict[str, Any]:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'VACUUM ANALYZE "{table}"')
        sizes = conn.execute(sa.text(
            "SELECT pg_total_relation_size(:t), pg_relation_size(:t), pg_indexes_size(:t)"),
            {"t": table}).one()
        total, heap, indexes = (int(v) for v in sizes)
        rows: int = conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
        subject_days: int = conn.execute(sa.text(_SUBJECT_DAYS[table])).scalar_one()
    return {"table": table, "rows": rows, "subject_days": subject_days, "bytes": total,
            "heap_bytes": heap, "index_bytes": indexes,
            "bytes_per_subject_day": round(total / max(subject_days, 1), 1)}


def run(sqlite_file: str) -> dict[str, Any]:
    from ubi.models.session import create_db_engine, reset_engines
    from ubi.services import databases, schema
    from ubi.settings import load_settings

    source = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    tables = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    table = "features" if "features" in tables else "feature_days"
    admin = os.environ.get("UBI_BENCH_PG_ADMIN_URL", _harness.DEFAULT_PG_ADMIN_URL)
    name = f"ubi_bench_{uuid.uuid4().hex[:10]}"
    databases.create_database(admin, name)
    url = databases.database_url(admin, name)
    settings = load_settings({"DATABASE_URL": url, "CELERY_BROKER_URL": "memory://",
                              "UBI_PSEUDONYM_SECRET": "bench", "UBI_JWT_SECRET": "bench",
                              "UBI_RECEIPT_SIGNING_KEY": _harness.signing_key_pem()})
    engine = create_db_engine(url)
    try:
        schema.upgrade(settings, "0014" if table == "features" else "head")
        _copy(source, engine, table)
        out: dict[str, Any] = {"source": sqlite_file, **_measure(engine, table)}
        if table == "features":
            t = time.perf_counter()
            schema.upgrade(settings)  # 0015 converts the rows
            out["migration_s"] = round(time.perf_counter() - t, 2)
            out["converted"] = _measure(engine, "feature_days")
            out["ratio"] = round(out["bytes_per_subject_day"]
                                 / out["converted"]["bytes_per_subject_day"], 1)
        return out
    finally:
        engine.dispose()
        reset_engines()
        databases.drop_database(admin, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", required=True, help="an embedded database file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = run(args.sqlite)
    if args.json:
        print(json.dumps(out))
        return 0
    for part in (out, out.get("converted")):
        if part:
            print(f"{part['table']:13} {part['rows']:>10,} rows  {part['subject_days']:>8,} "
                  f"subject-days  {part['bytes']:>12,} B (heap {part['heap_bytes']:,}, "
                  f"indexes {part['index_bytes']:,})  "
                  f"{part['bytes_per_subject_day']:,} B per subject-day")
    if "ratio" in out:
        print(f"migration 0015 took {out['migration_s']} s; {out['ratio']}x less")
    return 0
