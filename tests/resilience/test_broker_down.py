"""Broker down at the front door: 503, nothing stored; back up: the same request succeeds."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import requests
import sqlalchemy as sa

from tests.support.envelopes import envelope
from tests.support.servers import web_process
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import running_worker
from ubi.models import Batch, Event


def test_post_is_503_while_the_broker_is_down_and_retry_succeeds(
        tokens, db_session, settings, broker) -> None:
    parsed = urlparse(settings.broker_url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5672).start()
    proxied = settings.broker_url.replace(f"{parsed.hostname}:{parsed.port or 5672}",
                                          f"127.0.0.1:{proxy.port}")
    if proxied == settings.broker_url:  # URL without an explicit port
        proxied = settings.broker_url.replace(f"@{parsed.hostname}",
                                              f"@127.0.0.1:{proxy.port}")
    token = tokens("acme", "ubi:write:events")
    body = json.dumps({"events": [envelope(), envelope(actor="bob")]})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with web_process(CELERY_BROKER_URL=proxied, UBI_BROKER_CONNECT_TIMEOUT="1") as base:
            ok = requests.post(f"{base}/events", data=body, headers=headers, timeout=30)
            assert ok.status_code == 202  # the proxy passes traffic: a warm connection
            proxy.stop()
            down = requests.post(f"{base}/events", data=json.dumps(
                {"events": [envelope(actor="carol")]}), headers=headers, timeout=60)
            assert down.status_code == 503, down.text
            assert down.json()["code"] == "dependency_unavailable"
            assert down.json()["errors"] == {"dependency": "broker"}
            assert down.headers["Retry-After"]
            failed = db_session.execute(sa.select(Batch).where(
                Batch.status == "failed")).scalars().one()
            assert failed.error.startswith("not queued")
            ready = requests.get(f"{base}/ready", timeout=30)
            assert ready.status_code == 503 and ready.json()["errors"]["dependencies"] == [
                "broker"]

            proxy.start()
            retry = requests.post(f"{base}/events", data=json.dumps(
                {"events": [envelope(actor="carol", signal_id="carol-1")]}), headers=headers,
                timeout=60)
            assert retry.status_code == 202, retry.text
        with running_worker("ingest"):
            import time

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = db_session.execute(sa.select(sa.func.count()).select_from(Batch).where(
                    Batch.status == "done")).scalar()
                if done == 2:
                    break
                db_session.rollback()
                time.sleep(0.1)
        stored = db_session.execute(sa.select(Event.actor_id)).scalars().all()
        assert len(stored) == 3  # two from the first request, one from the retry, none lost
    finally:
        proxy.stop()
