"""Building SignalEnvelopes and posting them like the ingestion platform does."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ubi import clock

#: The real envelopes derived from celery/celery's git history (``examples/README.md``).
REAL_DATA = Path(__file__).resolve().parents[2] / "examples" / "celery-git-history.jsonl.gz"


def envelope(tenant: str = "acme", *, actor: str = "alice", signal_type: str = "commit_created",
             occurred_at: datetime | None = None, payload: dict[str, Any] | None = None,
             resource: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    occurred = occurred_at or clock.utcnow().replace(microsecond=0) - timedelta(hours=1)
    env: dict[str, Any] = {
        "signal_id": overrides.pop("signal_id", str(uuid.uuid4())),
        "tenant_id": tenant, "actor_id": actor, "signal_kind": "event",
        "signal_type": signal_type, "occurred_at": occurred.isoformat(),
        "ingested_at": (occurred + timedelta(seconds=3)).astimezone(UTC).isoformat(),
        "schema_version": "1.0",
        "resource": resource if resource is not None else {"repo": "acme/app",
                                                           "team_id": "core"},
        "payload": payload if payload is not None else {},
    }
    env.update(overrides)
    return env


def post_events(client: Any, token: str, events: list[dict[str, Any]] | bytes,
                wrap: bool = True, **headers: str) -> Any:
    body = events if isinstance(events, bytes) else json.dumps(
        {"events": events} if wrap else events).encode()
    return client.post("/v1/ubi/events", data=body, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}", **headers})


def wait_for_batch(client: Any, token: str, batch_id: str, timeout: float = 30.0,
                   statuses: tuple[str, ...] = ("done", "failed")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/v1/ubi/batches/{batch_id}",
                          headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.json
        if resp.json["status"] in statuses or time.monotonic() > deadline:
            return resp.json
        time.sleep(0.05)


def real_envelopes() -> list[bytes]:
    with gzip.open(REAL_DATA) as fh:
        return [line.rstrip(b"\n") for line in fh if line.strip()]
