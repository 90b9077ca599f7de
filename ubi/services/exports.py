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
from itertools import groupby
from operator import attrgetter
from typing import Any

from sqlalchemy.orm import Session

from ubi.store import features as feature_store

FORMATS = ("jsonl", "csv")
COLUMNS = ("actor_scope", "subject_id", "feature_name", "dimension", "window", "day", "value",
           "confidence")
GROUP_SCOPES = ("team", "cohort", "tenant")


def aggregate_rows(session: Session, tenant_id: str, first: date, last: date
                   ) -> Iterator[dict[str, Any]]:
    """The group features of [first, last] by day, scope, subject, window and feature name."""
    subject_day = attrgetter("day", "actor_scope", "subject_id")
    for _, group in groupby(feature_store.records(
            session, tenant_id, scopes=GROUP_SCOPES, first=first, last=last), subject_day):
        for r in sorted(group, key=attrgetter("window", "feature_name")):
            yield {"actor_scope": r.actor_scope, "subject_id": r.subject_id,
                   "feature_name": r.feature_name, "dimension": r.dimension,
                   "window": r.window, "day": r.day, "value": r.value,
                   "confidence": r.confidence}


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
