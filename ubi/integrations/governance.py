"""The Data Governance client (SPEC §8): ``POST {UBI_GOVERNANCE_URL}/privacy/v1/retention/
evaluate`` through the governance circuit breaker (``ubi/integrations/breakers.py``).

An answer is a :class:`Decision`. Anything else raises :class:`breakers.Unavailable`, and the
caller falls back (the last known answer, else the tenant's ``retention_days``): a 5xx, a
timeout, a connection error or the open breaker (these count towards opening it); a 429, with
its ``Retry-After`` (an answer, not a failure: the breaker stays as it is); any other status or
a body that is not a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import requests

from ubi.integrations import breakers
from ubi.integrations.breakers import Failure, retry_after_seconds
from ubi.settings import Settings, get_settings

SERVICE = "governance"
EVALUATE_PATH = "/privacy/v1/retention/evaluate"
DATA_CATEGORY = "behavioural_events"
ACTIONS = ("none", "retain", "delete")

Action = Literal["none", "retain", "delete"]


@dataclass(frozen=True)
class Decision:
    """Data Governance's answer for one month of a tenant's data."""

    action: Action
    policy_id: str | None = None
    legal_hold: bool = False

    @property
    def deletes(self) -> bool:
        """True when this answer removes the data (a delete without legal hold)."""
        return self.action == "delete" and not self.legal_hold


def decision_of(body: Any) -> Decision | None:
    """The decision in an evaluate answer's body, or None when it is not one."""
    if not isinstance(body, dict) or body.get("action") not in ACTIONS:
        return None
    policy_id, hold = body.get("policy_id"), body.get("legal_hold", False)
    if policy_id is not None and not isinstance(policy_id, str):
        return None
    if hold is None:
        hold = False
    if not isinstance(hold, bool):
        return None
    return Decision(cast(Action, body["action"]), policy_id, hold)


class GovernanceClient:
    """Asks Data Governance for retention decisions. One instance per process is enough (it
    keeps a connection pool)."""

    def __init__(self, settings: Settings | None = None,
                 http: requests.Session | None = None) -> None:
        self.settings = settings or get_settings()
        if not self.settings.governance_url:
            raise ValueError("UBI_GOVERNANCE_URL is not set")
        self.url = self.settings.governance_url + EVALUATE_PATH
        self.http = http or requests.Session()

    def evaluate(self, tenant_id: str, last_activity_months: int, *,
                 data_category: str = DATA_CATEGORY) -> Decision:
        """The decision for a tenant's data whose newest activity is ``last_activity_months``
        whole months old; raises :class:`breakers.Unavailable` without one."""
        response = breakers.call(
            SERVICE, self.http, "POST", self.url, settings=self.settings,
            json={"tenant_id": tenant_id, "data_category": data_category,
                  "last_activity_months": last_activity_months})
        reason = f"HTTP {response.status_code}: {response.text.strip()[:500]}".rstrip(": ")
        if response.status_code == 429:
            raise breakers.Unavailable(Failure(
                reason, 429, retry_after_seconds(response.headers.get("Retry-After"))))
        if response.status_code != 200:
            raise breakers.Unavailable(Failure(reason, response.status_code))
        try:
            body = response.json()
        except ValueError:
            body = None
        decision = decision_of(body)
        if decision is None:
            raise breakers.Unavailable(Failure(f"not a retention decision: {reason}", 200))
        return decision
