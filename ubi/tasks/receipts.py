"""Tasks of the ``receipts`` queue: evidence receipts to ERIS (SPEC §13)."""

from __future__ import annotations

import threading
from typing import Any

from ubi.celery_app import app
from ubi.integrations.eris import ErisClient
from ubi.services import receipts
from ubi.settings import get_settings
from ubi.tasks import names
from ubi.tasks.base import UbiTask

_clients: dict[str, ErisClient] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> ErisClient:
    with _clients_lock:  # one connection pool per worker process and URL
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = ErisClient(get_settings())
        return client


@app.task(base=UbiTask, bind=True, name=names.DELIVER_RECEIPTS)
def deliver_receipts(self: UbiTask) -> dict[str, Any]:
    """Deliver the due receipts of the outbox to ERIS (beat, every few seconds). Without
    ``UBI_ERIS_URL`` receipts stay in the outbox."""
    url = get_settings().eris_url
    if not url:
        return {"skipped": "UBI_ERIS_URL is not set"}
    report = receipts.deliver_due(self.session, _client(url))
    return {"delivered": report.delivered, "duplicate": report.duplicate,
            "retry": report.retry, "dead": report.dead}
