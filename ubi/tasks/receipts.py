"""Tasks of the `receipts` queue."""

from __future__ import annotations
