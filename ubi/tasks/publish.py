"""Tasks of the ``publish`` queue: the signal stream."""

from __future__ import annotations

from typing import Any

from ubi.celery_app import app
from ubi.integrations.signal_stream import publisher
from ubi.services import stream
from ubi.tasks import names
from ubi.tasks.base import UbiTask


@app.task(base=UbiTask, bind=True, name=names.DRAIN_SIGNAL_OUTBOX,
          followup_key="publish")
def drain_signal_outbox(self: UbiTask) -> dict[str, Any]:
    """Publish the signal versions waiting in the outbox (beat, and after each detect run)."""
    report = stream.drain_signal_outbox(self.session, publisher())
    return {"published": report.published, "failed": report.failed,
            "deferred": report.deferred, "suppressed": report.suppressed,
            "rate_limited": report.rate_limited}
