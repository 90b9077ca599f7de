"""Redis cut under ingestion: nothing accepted is lost.

Redis holds what may be lost or rebuilt (rate-limit counters, which fail open with a metric;
breaker state, which falls back to each process's own; IAM answers, which are asked again);
nothing on the path of an event needs it. A web process whose Redis goes away in the middle
of a run of batches keeps answering 202, and every accepted event is stored exactly once.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlparse

import requests
import sqlalchemy as sa

from tests.support.envelopes import envelope
from tests.support.servers import web_process
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import running_worker
from ubi.models import Batch, Event


def test_a_redis_cut_under_ingestion_loses_nothing(tokens, db_session, settings,
                                                   broker) -> None:
    parsed = urlparse(settings.redis_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 6379).start()
    proxied = f"redis://127.0.0.1:{proxy.port}{parsed.path or '/0'}"
    headers = {"Authorization": f"Bearer {tokens('acme', 'ubi:write:events')}",
               "Content-Type": "application/json"}
    accepted = 0
    try:
        with web_process(REDIS_URL=proxied) as base:
            for i in range(12):
                if i == 4:
                    proxy.stop()  # Redis goes away in the middle of the run
                if i == 9:
                    proxy.start()
                batch = [envelope(actor=f"dev{j}", signal_id=f"redis-cut-{i}-{j}")
                         for j in range(25)]
                resp = requests.post(f"{base}/events", data=json.dumps({"events": batch}),
                                     headers=headers, timeout=60)
                assert resp.status_code == 202, (i, resp.text)
                accepted += resp.json()["summary"]["accepted"]
            page = requests.get(f"{base}/metrics", timeout=30).text
        fail_open = sum(float(v) for v in re.findall(
            r'^ubi_rate_limit_fail_open_total\{[^}]*tenant_id="acme"[^}]*\} (\S+)$', page,
            re.M))
        assert fail_open >= 1  # the limiter let requests through, counted
        with running_worker("ingest"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = db_session.execute(sa.select(sa.func.count()).select_from(Batch).where(
                    Batch.status == "done")).scalar()
                if done == 12:
                    break
                db_session.rollback()
                time.sleep(0.2)
        assert accepted == 12 * 25
        stored = db_session.execute(sa.select(Event.event_id)).scalars().all()
        assert len(stored) == len(set(stored)) == accepted
    finally:
        proxy.stop()
