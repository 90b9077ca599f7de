"""The ERIS client (SPEC §5.6, §13): receipts to ``POST {UBI_ERIS_URL}/v1/evidence/receipts``
and evidence blobs (evidence of 1 KB or more, ``ubi/services/evidence.py``) to ``POST
/v1/evidence/blobs``, through the ERIS circuit breaker (``ubi/integrations/breakers.py``), each
answer mapped to one delivery outcome.

Outcomes: ``delivered`` (200/201), ``duplicate`` (409: ERIS has the receipt, so it counts as
delivered), ``retry`` (5xx, 408, 429 with its ``Retry-After``, a timeout, a connection error,
or the breaker open) and ``permanent`` (any other 4xx, with ERIS's reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import requests

from ubi.integrations import breakers
from ubi.integrations.breakers import retry_after_seconds
from ubi.settings import Settings, get_settings

SERVICE = "eris"
RECEIPTS_PATH = "/v1/evidence/receipts"
BLOBS_PATH = "/v1/evidence/blobs"

OutcomeKind = Literal["delivered", "duplicate", "retry", "permanent"]


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to; ``retry_after`` in seconds when ERIS asked."""

    kind: OutcomeKind
    reason: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    #: False when no call was made (the breaker is open): not an attempt of the receipt's, so
    #: it does not lengthen its backoff; it is due again when the breaker may let a probe by.
    attempted: bool = True

    @property
    def delivered(self) -> bool:
        return self.kind in ("delivered", "duplicate")


def outcome_of(status_code: int, body: str, retry_after: str | None = None) -> Outcome:
    """Map an HTTP answer of ERIS to an outcome (SPEC §13)."""
    reason = f"HTTP {status_code}: {body.strip()[:500]}".rstrip(": ")
    if status_code in (200, 201):
        return Outcome("delivered", status_code=status_code)
    if status_code == 409:
        return Outcome("duplicate", status_code=status_code)
    if status_code == 429:
        return Outcome("retry", reason, status_code, retry_after_seconds(retry_after))
    if status_code == 408 or status_code >= 500:
        return Outcome("retry", reason, status_code, retry_after_seconds(retry_after))
    if 400 <= status_code < 500:
        return Outcome("permanent", reason, status_code)
    # 1xx/3xx (a redirect is not followed for a POST): nothing stored; try again later.
    return Outcome("retry", reason, status_code)


class ErisClient:
    """Submits signed receipts to ERIS. One instance per process is enough (it keeps a
    connection pool); it never raises for what ERIS or the network does."""

    def __init__(self, settings: Settings | None = None,
                 http: requests.Session | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.eris_url:
            raise ValueError("UBI_ERIS_URL is not set")
        self.url = self.settings.eris_url + RECEIPTS_PATH
        self.blobs_url = self.settings.eris_url + BLOBS_PATH
        self.http = http or requests.Session()

    def submit(self, document: dict[str, Any], resource_type: str = "signal") -> Outcome:
        """One delivery attempt of a receipt, or of an evidence blob (``resource_type``
        ``evidence``); ERIS's duplicate answer to either counts as delivered."""
        url = self.blobs_url if resource_type == "evidence" else self.url
        try:
            response = breakers.call(SERVICE, self.http, "POST", url, json=document,
                                     settings=self.settings)
        except breakers.Unavailable as exc:
            failed = exc.failure
            return Outcome("retry", failed.reason, failed.status_code, failed.retry_after,
                           attempted=failed.attempted)
        return outcome_of(response.status_code, response.text,
                          response.headers.get("Retry-After"))
