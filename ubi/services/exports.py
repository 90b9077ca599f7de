"""De-identified exports of a tenant's aggregates (SPEC §6 ``GET /export``, §8).

Only team, cohort and tenant features leave: no actor id, no pseudonym, and no group under
``min_team_size`` (such groups have no feature rows at all: ``scopes.stored_cells``). Rows are
read in batches and written as they come, so an export of years costs constant memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ubi.models import Feature

FORMATS = ("jsonl", "csv")
COLUMNS = ("actor_scope", "subject_id", "feature_name", "dimension", "window", "day", "value",
           "confidence")
GROUP_SCOPES = ("team", "cohort", "tenant")


def aggregate_rows(session: Session, tenant_id: str, first: date, last: date
                   ) -> Iterator[dict[str, Any]]:
    f = Feature
    query = sa.select(f.actor_scope, f.subject_id, f.feature_name, f.dimension, f.window,
                      f.day, f.value, f.confidence).where(
        f.tenant_id == tenant_id, f.actor_scope.in_(GROUP_SCOPES), f.day >= first,
        f.day <= last).order_by(f.day, f.actor_scope, f.subject_id, f.window, f.feature_name)
    for row in session.execute(query.execution_options(yield_per=5000)):
        yield dict(zip(COLUMNS, row, strict=True))


def render(rows: Iterator[dict[str, Any]], fmt: str) -> Iterator[str]:
    """The rows as JSON lines or CSV (with a header), a chunk at a time."""
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, default=str, separators=(",", ":")) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(rows, 1):
        writer.writerow(row)
        if i % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
