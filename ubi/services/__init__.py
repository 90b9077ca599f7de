"""Use cases (ingest, features, detection, baselines, queries, ...); storage mechanics are
``ubi.store``'s."""
