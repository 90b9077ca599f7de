"""The storage layer: how UBI's rows reach the database and come back, set-based.

- ``bulk``: set-based writes (COPY, unnest inserts and upserts on PostgreSQL, multi-row
  statements on SQLite); no per-row ORM objects or round trips on the hot path.
- ``pgcopy``: PostgreSQL's binary COPY format, encoded from numpy columns (the baselines'
  writes) and decoded into numpy record arrays (the activity loader's reads).
- ``activity``: loaders of the analytics' inputs (a tenant's daily rollups, interactions and
  work items as a ``DailyActivity``).
- ``partitions``: the daily partitions of ``events``.

The use cases (ingest a batch, compute features, detect, recompute baselines, ...) live in
``ubi.services``: they decide what to store and when, and call this package for how.
"""
