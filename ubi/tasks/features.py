"""Tasks of the `features` queue."""

from __future__ import annotations
