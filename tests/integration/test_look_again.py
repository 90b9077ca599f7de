"""A step that finds its tenant busy schedules one more look, not one per busy run."""

from __future__ import annotations

import time
import uuid

from tests.support.resources import ready_messages
from ubi.integrations.dependencies import redis_client
from ubi.tasks.base import look_again
from ubi.tasks.features import compute_features


def test_busy_runs_schedule_one_look_per_key(settings, broker, clean_db) -> None:  # type: ignore[no-untyped-def]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    queue = settings.queue_name("features")
    before = ready_messages(broker, queue)
    kwargs = {"tenant_id": tenant, "correlation_id": None}
    sent = [look_again(compute_features, key=f"features:{tenant}", kwargs=kwargs, countdown=1)
            for _ in range(3)]
    assert sent == [True, False, False]
    client = redis_client(settings)
    assert client is not None
    key = f"{settings.queue_prefix}ubi:look:features:{tenant}"
    assert 0 < client.pttl(key) <= 1000  # the guard lasts as long as the countdown
    # The one look reaches the features queue once due (countdowns travel through Celery's
    # delayed-delivery queues first), and only one.
    deadline = time.monotonic() + 15
    while ready_messages(broker, queue) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert ready_messages(broker, queue) == before + 1
    # Once the countdown is over, a busy run schedules the next look.
    assert client.pttl(key) < 0
    assert look_again(compute_features, key=f"features:{tenant}", kwargs=kwargs, countdown=1)
