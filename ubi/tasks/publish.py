"""Tasks of the `publish` queue."""

from __future__ import annotations
