"""One beat instance (SPEC §14): the scheduler runs only while it holds a Redis lock.

A second ``ubi beat`` waits as a standby and takes over when the holder stops renewing (crash,
shutdown); if the holder loses the lock it exits rather than schedule twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger("ubi.beat")

LOCK_TTL_SECONDS = 60
RENEW_EVERY_SECONDS = 15


class BeatLock:
    def __init__(self, client: redis.Redis, name: str):
        self.client = client
        self.name = name
        self.token = f"{os.getpid()}-{time.time_ns()}"
        self._stop = threading.Event()

    def acquire(self, wait: bool = True, poll_seconds: float = 5.0) -> bool:
        while True:
            if self.client.set(self.name, self.token, nx=True, ex=LOCK_TTL_SECONDS):
                return True
            if not wait:
                return False
            time.sleep(poll_seconds)

    def renew(self) -> bool:
        """Extend the lock only if we still hold it (atomic compare-and-expire)."""
        script = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                  "return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end")
        return bool(self.client.eval(script, 1, self.name, self.token, LOCK_TTL_SECONDS))

    def release(self) -> None:
        script = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                  "return redis.call('del', KEYS[1]) else return 0 end")
        self.client.eval(script, 1, self.name, self.token)

    def keep_alive(self, on_lost: Callable[[], None]) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(RENEW_EVERY_SECONDS):
                try:
                    held = self.renew()
                except redis.RedisError as exc:
                    log.warning("could not renew beat lock: %s", exc)
                    continue
                if not held:
                    log.error("beat lock lost: stopping this scheduler")
                    on_lost()
                    return

        thread = threading.Thread(target=loop, name="beat-lock", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
