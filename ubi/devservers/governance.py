"""A stand-in for Data Governance, for development and the test suite only.

It is a small real HTTP server (``ubi/devservers/standin.py``) that speaks the part of Data
Governance's API UBI uses (SPEC §8), answering per tenant as configured:

- ``POST /privacy/v1/retention/evaluate`` ``{tenant_id, data_category,
  last_activity_months}`` → ``{action, policy_id?, legal_hold?}``. A tenant without a policy
  gets ``{"action": "none"}``; with one, ``delete`` once ``last_activity_months`` reaches its
  ``delete_after_months``, else ``retain``. A legal hold does not change the action: the
  answer says ``legal_hold: true`` and UBI must not delete (so UBI's check is what is
  tested). A body that is not such a request: 400.
- ``PUT /_policies/{tenant_id}`` ``{delete_after_months?, legal_hold?, policy_id?}``
  configures a tenant (``DELETE`` removes it, ``GET /_policies`` lists them); the CLI's
  ``--policy TENANT=MONTHS`` and ``--legal-hold TENANT`` do the same at start.
- ``POST /_callbacks/deletion`` ``{ubi_url, token, tenant_id, actor_id?, time_range?}`` makes
  the stand-in send UBI a deletion callback, as Data Governance does: ``POST
  {ubi_url}/v1/ubi/privacy/deletions`` with ``Authorization: Bearer {token}`` and the body
  ``{tenant_id, actor_id?, time_range?}``; it answers (and records) UBI's status and body, or
  502 when UBI could not be reached.
- Fault injection (``POST /_faults``) on the evaluate calls; ``GET /_received``: every
  evaluation it saw (``calls``), the ``callbacks`` it sent and the ``policies``;
  ``DELETE /_received`` forgets the calls and callbacks (the policies stay).

Run it with ``ubi devserver governance --port 8300 --policy acme=12`` and point UBI at it
with ``UBI_GOVERNANCE_URL=http://127.0.0.1:8300``. In production that names the real service.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from ubi.devservers.standin import Answer, StandIn

EVALUATE = "/privacy/v1/retention/evaluate"
POLICIES = "/_policies"
CALLBACK = "/_callbacks/deletion"
DELETIONS_PATH = "/v1/ubi/privacy/deletions"


@dataclass
class Policy:
    """A tenant's retention policy. ``delete_after_months`` None: keep everything."""

    delete_after_months: int | None = None
    legal_hold: bool = False
    policy_id: str | None = None

    def answer(self, last_activity_months: int) -> dict[str, Any]:
        due = (self.delete_after_months is not None
               and last_activity_months >= self.delete_after_months)
        body: dict[str, Any] = {"action": "delete" if due else "retain",
                                "legal_hold": self.legal_hold}
        if self.policy_id is not None:
            body["policy_id"] = self.policy_id
        return body


def policy_from(body: Any) -> Policy | str:
    """A policy from a ``PUT /_policies/{tenant}`` body, or the reason it is not one."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    months = body.get("delete_after_months")
    if months is not None and (isinstance(months, bool) or not isinstance(months, int)
                               or months < 0):
        return "delete_after_months: a whole number >= 0, or null"
    hold = body.get("legal_hold", False)
    if not isinstance(hold, bool):
        return "legal_hold: true or false"
    policy_id = body.get("policy_id")
    if policy_id is not None and not isinstance(policy_id, str):
        return "policy_id: a string"
    return Policy(months, hold, policy_id)


class GovernanceStandIn(StandIn):
    """The Data Governance stand-in; ``start()`` serves it in a thread, ``url`` is its base."""

    service = "governance"

    def __init__(self, *, policies: dict[str, Policy] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.policies: dict[str, Policy] = dict(policies or {})
        self.callbacks: list[dict[str, Any]] = []
        super().__init__(host=host, port=port)

    def set_policy(self, tenant_id: str, policy: Policy) -> None:
        with self.lock:
            self.policies[tenant_id] = policy

    # --- the record ---

    def received(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": list(self.calls), "callbacks": list(self.callbacks),
                    "policies": {t: asdict(p) for t, p in self.policies.items()}}

    def forget(self) -> None:
        super().forget()
        self.callbacks.clear()

    # --- routes ---

    def handle(self, method: str, path: str, body: Any) -> Answer:
        if method == "POST" and path == EVALUATE:
            return self._evaluate(body)
        if method == "GET" and path == POLICIES:
            with self.lock:
                return Answer(200, {t: asdict(p) for t, p in self.policies.items()})
        if path.startswith(POLICIES + "/") and method in ("PUT", "DELETE"):
            tenant_id = path[len(POLICIES) + 1:]
            if not tenant_id or "/" in tenant_id:
                return Answer(404, {"error": "not_found"})
            if method == "DELETE":
                with self.lock:
                    self.policies.pop(tenant_id, None)
                return Answer(200, {"ok": True})
            policy = policy_from(body)
            if isinstance(policy, str):
                return Answer(400, {"error": "bad_request", "reason": policy})
            self.set_policy(tenant_id, policy)
            return Answer(200, {"tenant_id": tenant_id, **asdict(policy)})
        if method == "POST" and path == CALLBACK:
            return self._send_callback(body)
        return Answer(404, {"error": "not_found"})

    def _evaluate(self, body: Any) -> Answer:
        request = body if isinstance(body, dict) else {}
        tenant_id, months = request.get("tenant_id"), request.get("last_activity_months")
        fault = self.take_fault()
        answer = self.shared_fault(fault)
        if answer is None:
            if (not isinstance(tenant_id, str) or not tenant_id
                    or not isinstance(request.get("data_category"), str)
                    or isinstance(months, bool) or not isinstance(months, int) or months < 0):
                answer = Answer(400, {"error": "bad_request", "reason": "expected {tenant_id, "
                                      "data_category, last_activity_months >= 0}"})
            else:
                with self.lock:
                    policy = self.policies.get(tenant_id)
                answer = Answer(200, policy.answer(months) if policy else {"action": "none"})
        self.record(tenant_id=tenant_id, data_category=request.get("data_category"),
                    last_activity_months=months, status=answer.status,
                    fault=fault.mode if fault else None,
                    action=(answer.body or {}).get("action") if answer.status == 200 else None)
        return answer

    def _send_callback(self, body: Any) -> Answer:
        if (not isinstance(body, dict) or not isinstance(body.get("ubi_url"), str)
                or not isinstance(body.get("token"), str)
                or not isinstance(body.get("tenant_id"), str)):
            return Answer(400, {"error": "bad_request",
                                "reason": "expected {ubi_url, token, tenant_id, actor_id?, "
                                          "time_range?}"})
        deletion = {k: body[k] for k in ("tenant_id", "actor_id", "time_range")
                    if body.get(k) is not None}
        request = urllib.request.Request(
            body["ubi_url"].rstrip("/") + DELETIONS_PATH, data=json.dumps(deletion).encode(),
            method="POST", headers={"Authorization": f"Bearer {body['token']}",
                                    "Content-Type": "application/json"})
        status: int | None
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:  # UBI answered, with an error
            status, text = exc.code, exc.read().decode()
        except (OSError, ValueError) as exc:
            status, text = None, f"unreachable: {exc}"
        try:
            answer_body: Any = json.loads(text)
        except ValueError:
            answer_body = text
        sent = {"request": deletion, "status": status, "body": answer_body}
        with self.lock:
            self.callbacks.append(sent)
        if status is None:
            return Answer(502, {"error": "ubi_unreachable", "reason": answer_body})
        return Answer(200, {"status": status, "body": answer_body})
