"""Tasks of the `detect` queue."""

from __future__ import annotations
