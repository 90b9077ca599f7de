"""A step that finds its tenant busy schedules one more look, not one per busy run."""

from __future__ import annotations

import uuid

from ubi.integrations.dependencies import redis_client
from ubi.tasks.base import look_again
from ubi.tasks.features import compute_features


def test_busy_runs_schedule_one_look_per_key(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    kwargs = {"tenant_id": tenant, "correlation_id": None}
    sent = [look_again(compute_features, key=f"features:{tenant}", kwargs=kwargs, countdown=5)
            for _ in range(3)]
    assert sent == [True, False, False]
    client = redis_client(settings)
    assert client is not None
    key = f"{settings.queue_prefix}ubi:look:features:{tenant}"
    assert 0 < client.pttl(key) <= 5000  # the guard lasts as long as the countdown
    # Another key (tenant or step) is not held back by this one's look.
    assert look_again(compute_features, key=f"features:{tenant}-other", kwargs=kwargs,
                      countdown=5)
    client.delete(key, f"{key}-other")
