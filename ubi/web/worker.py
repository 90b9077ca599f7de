"""The web process's gunicorn worker: gthread, with new connections offered to idle siblings.

gunicorn's gthread workers all poll the one listening socket and accept first come, first
served, and a keep-alive connection then stays with the worker that accepted it. Clients that
connect at once can so land on one worker: with 8 clients and 2 workers it was seen serving
every request on one core (one GIL) while the other idled (benoitc/gunicorn#2817; the
maintainers call it expected). Capping ``worker_connections`` would balance them but leave a
connection beyond the cap waiting until a kept-alive one closes, which a busy client never does.

This worker is polite instead: while it holds at least one connection per thread it stops
taking new ones, and looks at the listening socket once every ``ACCEPT_DEFERRAL_S``; it takes
a connection only when one was already waiting at its previous look. A sibling with a free
thread accepts at once; when every worker is full, a new connection waits at most two
deferrals. Nothing else of gthread changes.
"""

from __future__ import annotations

import select
import time

from gunicorn.workers.gthread import ThreadWorker

# How long a full worker leaves a new connection to its siblings. An idle worker blocked in
# its poller takes a connection within microseconds (milliseconds on a loaded machine), so
# this only has to cover scheduling delays (a connection waits up to twice this when all are full).
ACCEPT_DEFERRAL_S = 0.025


class PoliteThreadWorker(ThreadWorker):
    """A gthread worker that leaves new connections to siblings while its threads are taken."""

    _next_look = 0.0
    _full = False
    _seen_waiting = False

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # run() has just enabled accepting if worker_connections allows it.
        full = self.alive and self._accepting and self.nr_conns >= self.cfg.threads
        if full:
            now = time.monotonic()
            if not self._full:  # just filled up: siblings get the first ACCEPT_DEFERRAL_S
                self._next_look, self._seen_waiting = now + ACCEPT_DEFERRAL_S, False
            take = False
            if now >= self._next_look:
                # A look without accepting: a connection is taken only if one was already
                # waiting at the previous look, so only after siblings had a whole deferral.
                waiting = bool(select.select(self.sockets, [], [], 0)[0])
                take, self._seen_waiting = waiting and self._seen_waiting, waiting
                self._next_look = now + ACCEPT_DEFERRAL_S
            if take:
                timeout = 0.0  # one non-blocking round with the listener
            else:
                self.set_accept_enabled(False)
                timeout = min(timeout, max(self._next_look - now, 0.0))
        self._full = full
        super().wait_for_and_dispatch_events(timeout)
