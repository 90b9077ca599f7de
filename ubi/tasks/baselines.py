"""Tasks of the `baselines` queue."""

from __future__ import annotations
