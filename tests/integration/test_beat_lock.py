"""Only one beat schedules: the Redis lock admits one holder, a standby takes over when the
holder stops renewing, and a holder that lost its lock is told to stop."""

from __future__ import annotations

import uuid

import redis

from ubi.integrations.beat_lock import LOCK_TTL_SECONDS, BeatLock


def test_single_holder_and_takeover(settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    name = f"{settings.queue_prefix}test:beat:{uuid.uuid4().hex}"
    first, second = BeatLock(client, name), BeatLock(client, name)
    try:
        assert first.acquire(wait=False)
        assert not second.acquire(wait=False)
        assert first.renew()
        assert client.ttl(name) > LOCK_TTL_SECONDS - 5
        # The holder dies without releasing: its lock expires and the standby takes over.
        client.expire(name, 1)
        client.delete(name)
        assert second.acquire(wait=False)
        assert not first.renew()  # the old holder learns it lost the lock
        first.release()  # releasing someone else's lock does nothing
        holder = client.get(name)
        assert isinstance(holder, bytes)
        assert holder.decode() == second.token
    finally:
        second.release()
        client.delete(name)
    assert client.get(name) is None
