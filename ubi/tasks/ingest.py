"""Tasks of the `ingest` queue."""

from __future__ import annotations
