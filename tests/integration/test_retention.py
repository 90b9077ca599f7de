"""Retention (SPEC §8, issue 20): the retention run asks the Data Governance stand-in over real
HTTP, per tenant and month of stored data, records every answer, requests deletion jobs for
the months it deletes (and for nothing else), falls back to the last known answer or to
``retention_days`` when Governance gives none, and drops the ``events`` partitions that the
jobs emptied. The clock is pinned: the suite's today is 2026-06-17."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.integration.conftest import forget_breaker, standin_settings
from tests.support.envelopes import envelope
from ubi import clock
from ubi.analytics.privacy import Pseudonymiser
from ubi.cli import main
from ubi.devservers.governance import GovernanceStandIn, Policy
from ubi.integrations import breakers
from ubi.integrations.governance import GovernanceClient
from ubi.models import AuditEntry, DeletionJob, Event, RetentionDecision, session_factory
from ubi.models.events import daily_rollups
from ubi.services import configs, deletions, ingest, retention
from ubi.store import partitions

TENANT = "rtn"
OTHER = "rtn-other"
RESET_SECONDS = 2.0
#: Days with one event each; with today 2026-06-17 their months are this many whole months
#: old (from the month's end): 2025-01 → 16, 2025-02 → 15, 2025-05 → 12, 2025-06 → 11,
#: 2026-05 → 0, 2026-06 → 0.
DAYS = [date(2025, 1, 10), date(2025, 2, 3), date(2025, 5, 20), date(2025, 6, 20),
        date(2026, 5, 5), date(2026, 6, 16)]
MONTHS = sorted({d.replace(day=1) for d in DAYS})
AGES = {date(2025, 1, 1): 16, date(2025, 2, 1): 15, date(2025, 5, 1): 12,
        date(2025, 6, 1): 11, date(2026, 5, 1): 0, date(2026, 6, 1): 0}


def store_events(tenant_id: str, days: list[date], settings: Any) -> None:
    events = [envelope(tenant_id, actor="alice",
                       occurred_at=datetime(d.year, d.month, d.day, 12, tzinfo=UTC))
              for d in days]
    with session_factory()() as s:
        ingest.store_batch(s, batch_id=str(uuid.uuid4()), tenant_id=tenant_id,
                           events_json=json.dumps(events), received_at=clock.utcnow(),
                           correlation_id=None,
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        s.commit()


@pytest.fixture
def governance() -> Iterator[GovernanceStandIn]:
    with GovernanceStandIn() as server:
        yield server


@pytest.fixture
def gov_settings(settings, governance, clean_db) -> Iterator[Any]:
    with standin_settings(settings, "governance", governance.url,
                          reset_seconds=RESET_SECONDS) as configured:
        yield configured


@pytest.fixture
def stored(gov_settings, settings) -> None:
    store_events(TENANT, DAYS, settings)


def policy(governance: GovernanceStandIn, tenant_id: str = TENANT, **body: Any) -> None:
    requests.put(f"{governance.url}/_policies/{tenant_id}", json=body,
                 timeout=5).raise_for_status()


def fault(governance: GovernanceStandIn, **body: Any) -> None:
    requests.post(f"{governance.url}/_faults", json=body, timeout=5).raise_for_status()


def calls(governance: GovernanceStandIn) -> list[dict[str, Any]]:
    return requests.get(f"{governance.url}/_received", timeout=5).json()["calls"]


def run(settings: Any) -> retention.RetentionReport:
    client = GovernanceClient(settings) if settings.governance_url else None
    with session_factory()() as s:
        report = retention.run_retention(s, client.evaluate if client else None)
        s.commit()
    return report


def decisions() -> dict[date, RetentionDecision]:
    with session_factory()() as s:
        found = s.execute(sa.select(RetentionDecision).where(
            RetentionDecision.tenant_id == TENANT)).scalars().all()
        s.expunge_all()
    return {d.month: d for d in found}


def jobs() -> list[DeletionJob]:
    with session_factory()() as s:
        found = s.execute(sa.select(DeletionJob).order_by(DeletionJob.time_from)
                          ).scalars().all()
        s.expunge_all()
    return list(found)


def job_months(found: list[DeletionJob] | None = None) -> list[date]:
    months = []
    for job in jobs() if found is None else found:
        assert job.time_from is not None and job.time_to is not None and job.actor_id is None
        assert job.requested_by == retention.REQUESTED_BY
        month = job.time_from.date()
        assert (month.day, job.time_to) == (1, retention.month_bounds(month)[1])
        months.append(month)
    return months


def audits(action: str) -> list[AuditEntry]:
    with session_factory()() as s:
        found = s.execute(sa.select(AuditEntry).where(AuditEntry.action == action)
                          .order_by(AuditEntry.id)).scalars().all()
        s.expunge_all()
    return list(found)


def event_days(tenant_id: str) -> list[date]:
    with session_factory()() as s:
        return sorted(s.execute(sa.select(Event.event_date).distinct().where(
            Event.tenant_id == tenant_id)).scalars())


def rollup_days(tenant_id: str) -> list[date]:
    with session_factory()() as s:
        return sorted(s.execute(sa.select(daily_rollups.c.day).where(
            daily_rollups.c.tenant_id == tenant_id)).scalars())


def existing_partitions() -> set[date]:
    with session_factory()() as s:
        return partitions.existing_partitions(s)


def run_jobs() -> None:
    for job in jobs():
        if job.status != "done":
            deletions.run_deletion(job.job_id)


# --- pure rules ---

def test_months_are_counted_from_their_end_and_the_fallback_keeps_partial_months() -> None:
    today = date(2026, 6, 17)
    assert {m: retention.last_activity_months(m, today) for m in MONTHS} == AGES
    assert retention.last_activity_months(date(2026, 7, 1), today) == 0
    # 365 days before today is 2025-06-17: May 2025 is wholly older, June 2025 is not.
    deleted = [m for m in MONTHS if retention.fallback_decision(m, today, 365).deletes]
    assert deleted == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]
    assert retention.month_bounds(date(2025, 12, 1)) == (
        datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


# --- Governance answers ---

def test_governance_deletes_old_months_and_only_those(governance, gov_settings, stored) -> None:
    policy(governance, delete_after_months=12, policy_id="pol-12")
    report = run(gov_settings)

    seen = calls(governance)
    assert sorted((c["last_activity_months"], c["tenant_id"], c["data_category"])
                  for c in seen) == sorted((a, TENANT, "behavioural_events")
                                           for a in AGES.values())
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]
    assert {d.job_id for d in report.requested} == {j.job_id for j in jobs()}
    recorded = decisions()
    assert sorted(recorded) == MONTHS
    assert {m: r.action for m, r in recorded.items()} == {
        m: "delete" if AGES[m] >= 12 else "retain" for m in MONTHS}
    assert all(r.source == "governance" and r.policy_id == "pol-12" and not r.legal_hold
               for r in recorded.values())
    assert {m for m, r in recorded.items() if r.applied_at is not None} == set(job_months())
    applied = audits("retention.delete")
    assert sorted(a.details["month"] for a in applied) == ["2025-01", "2025-02", "2025-05"]
    assert all(set(a.details) == {"month", "source", "answered", "policy_id",
                                  "last_activity_months", "job_id"} for a in applied)
    assert all(a.principal == retention.REQUESTED_BY and a.tenant_id == TENANT
               for a in applied)

    # The next day, the jobs not run yet: the same answers, no second job for any month.
    first_applied = {m: r.applied_at for m, r in decisions().items()}
    again = run(gov_settings)
    assert again.requested == [] and len(jobs()) == 3
    assert {m: r.applied_at for m, r in decisions().items()} == first_applied
    assert len(audits("retention.delete")) == 3


def test_a_legal_hold_deletes_nothing(governance, gov_settings, stored) -> None:
    policy(governance, delete_after_months=12, legal_hold=True, policy_id="hold")
    report = run(gov_settings)
    assert report.requested == [] and jobs() == []
    recorded = decisions()
    assert sorted(m for m, r in recorded.items() if r.action == "delete") == [
        date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]
    assert all(r.legal_hold and r.applied_at is None and r.source == "governance"
               for r in recorded.values())
    assert audits("retention.delete") == []
    assert event_days(TENANT) == DAYS


def test_no_policy_keeps_everything(governance, gov_settings, stored) -> None:
    assert run(gov_settings).requested == []
    assert {r.action for r in decisions().values()} == {"none"}
    assert jobs() == []


# --- Governance gives no answer ---

def test_governance_down_the_last_known_answer_applies(governance, gov_settings,
                                                       stored) -> None:
    policy(governance, delete_after_months=15, policy_id="pol-15")
    run(gov_settings)
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1)]
    before = decisions()
    # The job of February failed: its month still holds data and is due again.
    with session_factory()() as s:
        s.execute(sa.update(DeletionJob).where(
            DeletionJob.time_from == datetime(2025, 2, 1, tzinfo=UTC)).values(status="failed"))
        s.commit()
    requests.delete(f"{governance.url}/_received", timeout=5).raise_for_status()
    fault(governance, mode="down")

    report = run(gov_settings)
    # Three failures open the breaker; the other months do not reach Governance.
    assert len(calls(governance)) == 3
    assert breakers.breaker_state("governance", gov_settings) == "open"
    assert REGISTRY.get_sample_value("ubi_circuit_breaker_state",
                                     {"service": "governance"}) == 2.0
    assert report.unavailable is not None
    # The stored answers applied: February again (its job failed), January not (its job is
    # still queued), and May kept, as Governance said, although retention_days (365) alone
    # would delete it.
    assert job_months(report_jobs(report)) == [date(2025, 2, 1)]
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 2, 1)]
    after = decisions()
    assert {m: (r.action, r.source, r.decided_at) for m, r in after.items()} == {
        m: (r.action, r.source, r.decided_at) for m, r in before.items()}
    [audit] = [a for a in audits("retention.delete") if a.details["answered"] is False]
    assert audit.details["month"] == "2025-02" and audit.details["source"] == "governance"

    # Readiness says degraded, not down.
    from ubi.web.app import create_app

    ready = create_app(gov_settings).test_client().get("/v1/ubi/ready")
    assert ready.status_code == 200 and ready.json is not None
    assert ready.json["status"] == "degraded"
    assert ready.json["checks"]["governance"]["degraded"]


def report_jobs(report: retention.RetentionReport) -> list[DeletionJob]:
    ids = {d.job_id for d in report.requested}
    return [j for j in jobs() if j.job_id in ids]


def test_governance_down_and_nothing_known_retention_days_applies(
        governance, gov_settings, stored, settings) -> None:
    with session_factory()() as s:  # 400 days before today is 2025-05-13
        configs.change_config(s, TENANT, {"retention_days": 400}, author="lead",
                              now=clock.utcnow())
        s.commit()
    fault(governance, mode="5xx")
    report = run(gov_settings)
    assert len(calls(governance)) == 3  # then the breaker is open
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1)]  # May 2025 is younger
    recorded = decisions()
    assert all(r.source == "fallback" and r.policy_id == "retention_days:400"
               for r in recorded.values())
    assert {m for m, r in recorded.items() if r.action == "delete"} == {
        date(2025, 1, 1), date(2025, 2, 1)}
    assert len(report.decisions) == len(MONTHS)

    # Governance back: its answers replace the fallback's, and apply.
    requests.delete(f"{governance.url}/_faults", timeout=5).raise_for_status()
    forget_breaker(gov_settings, "governance")
    policy(governance, delete_after_months=12, policy_id="pol-12")
    run(gov_settings)
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]
    assert {r.source for r in decisions().values()} == {"governance"}


def test_without_governance_configured_retention_days_applies(settings, clean_db) -> None:
    store_events(TENANT, DAYS, settings)
    report = run(settings)  # no UBI_GOVERNANCE_URL
    assert report.unavailable is None
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]


def test_a_429_is_honoured(governance, gov_settings, stored, shared_clock) -> None:
    policy(governance, delete_after_months=40)  # Governance would delete nothing
    fault(governance, mode="429", retry_after=600, next_n=1)
    report = run(gov_settings)
    # One call, answered 429: the run asks no more (the rest would be within Retry-After).
    assert [c["status"] for c in calls(governance)] == [429]
    assert breakers.breaker_state("governance", gov_settings) == "closed"  # an answer
    assert report.unavailable is not None and "HTTP 429" in report.unavailable
    assert {r.source for r in decisions().values()} == {"fallback"}
    assert job_months() == [date(2025, 1, 1), date(2025, 2, 1), date(2025, 5, 1)]

    shared_clock.advance(timedelta(minutes=11))
    run(gov_settings)  # asked again: its answers replace the fallback's
    assert len(calls(governance)) == 1 + len(MONTHS)
    assert {(r.source, r.action) for r in decisions().values()} == {("governance", "retain")}


def test_a_slow_governance_times_out_into_the_fallback(governance, gov_settings,
                                                       stored) -> None:
    policy(governance, delete_after_months=40)  # Governance keeps every month
    fault(governance, mode="slow", delay=1.5, next_n=1)  # UBI_HTTP_TIMEOUT is 1 s here
    report = run(gov_settings)
    assert report.unavailable == "timeout after 1 s"
    # The oldest month, asked first, timed out and followed retention_days (365); the others
    # were answered.
    assert [(d.month, d.source) for d in report.decisions if d.source == "fallback"] == [
        (MONTHS[0], "fallback")]
    assert job_months() == [MONTHS[0]]


# --- end to end: the jobs run, the partitions go ---

def test_deleted_months_lose_their_data_and_empty_partitions(governance, gov_settings,
                                                             stored, settings) -> None:
    store_events(OTHER, [date(2025, 1, 10)], settings)  # shares a day with the tenant
    with session_factory()() as s:  # an empty partition in a deleted month (no traffic)
        partitions.ensure_partitions(s, [date(2025, 2, 4)])
    assert {date(2025, 1, 10), date(2025, 2, 3), date(2025, 2, 4),
            date(2025, 5, 20)} <= existing_partitions()
    policy(governance, delete_after_months=12, policy_id="pol-12")

    with_rows = {date(2025, 1, 10), date(2025, 2, 3), date(2025, 5, 20)}
    first = run(gov_settings)
    assert len(first.requested) == 3
    # The jobs have not run: the partitions with rows stay; the empty one goes already.
    assert date(2025, 2, 4) in first.partitions_dropped
    assert with_rows.isdisjoint(first.partitions_dropped)
    assert all(d.replace(day=1) in job_months() for d in first.partitions_dropped)
    run_jobs()
    assert {j.status for j in jobs()} == {"done"}
    kept = [date(2025, 6, 20), date(2026, 5, 5), date(2026, 6, 16)]
    assert event_days(TENANT) == kept and rollup_days(TENANT) == kept
    assert event_days(OTHER) == [date(2025, 1, 10)]

    second = run(gov_settings)
    assert second.requested == []
    assert {m.month for m in second.decisions if m.tenant_id == TENANT} == {
        d.replace(day=1) for d in kept}
    assert second.partitions_dropped == [date(2025, 2, 3), date(2025, 5, 20)]
    remaining = existing_partitions()
    assert {date(2025, 2, 3), date(2025, 2, 4), date(2025, 5, 20)}.isdisjoint(remaining)
    assert {date(2025, 1, 10), date(2025, 6, 20)} <= remaining  # the other tenant's rows
    entries = [a.details for a in audits("retention.drop_partitions")]
    assert len(entries) == 2 and entries[1] == {"partitions": 2, "first_day": "2025-02-03",
                                                "last_day": "2025-05-20"}

    # A late event for a dropped day, stored by a process that still believes the day has
    # its partition, lands in the default partition; ingestion then still makes partitions
    # for the other days and stores that day's events in the default partition.
    partitions._known.add(date(2025, 2, 3))  # that process's cache
    store_events(TENANT, [date(2025, 2, 3)], settings)
    partitions.forget_known_partitions()
    store_events(TENANT, [date(2025, 2, 3), date(2025, 2, 4)], settings)
    assert date(2025, 2, 4) in existing_partitions()
    assert date(2025, 2, 3) not in existing_partitions()
    with session_factory()() as s:
        assert s.execute(sa.text("SELECT count(*) FROM events_default WHERE tenant_id = :t"),
                         {"t": TENANT}).scalar_one() == 2
    assert date(2025, 2, 4) in event_days(TENANT)


def test_the_beat_task_runs_retention_and_owes_the_deletion_tasks(
        governance, gov_settings, stored, broker, monkeypatch) -> None:
    """The daily beat entry and its task, with the real deletion service owing its job."""
    import celeryconfig
    from ubi.tasks import maintenance, names

    entry = celeryconfig.beat_schedule["retention"]
    assert entry["task"] == names.APPLY_RETENTION
    queue: Any = celeryconfig.route_task(names.APPLY_RETENTION, (), {}, {})["queue"]
    assert queue.name.endswith("maintenance")
    policy(governance, delete_after_months=12)
    monkeypatch.setattr(maintenance, "get_settings", lambda: gov_settings)
    summary = maintenance.apply_retention()
    assert summary["deletions_requested"] == 3 and summary["by_source"] == {"answered": 6}
    with session_factory()() as s:
        owed: int = s.execute(sa.text("SELECT count(*) FROM task_outbox WHERE task_name = :n"),
                         {"n": names.RUN_DELETION}).scalar_one()
    assert owed == 3


# --- the stand-in ---

class _Receiver(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                "body": json.loads(body)})
        data = json.dumps({"job_id": "j-1", "status": "queued"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_stand_in_sends_a_deletion_callback(governance) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}"
        answer = requests.post(f"{governance.url}/_callbacks/deletion", json={
            "ubi_url": url, "token": "tok", "tenant_id": TENANT, "actor_id": "alice",
            "time_range": {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}},
            timeout=5)
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert answer.status_code == 200
    assert answer.json() == {"status": 202, "body": {"job_id": "j-1", "status": "queued"}}
    assert _Receiver.seen[-1] == {
        "path": "/v1/ubi/privacy/deletions", "auth": "Bearer tok",
        "body": {"tenant_id": TENANT, "actor_id": "alice",
                 "time_range": {"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}}}
    [sent] = requests.get(f"{governance.url}/_received", timeout=5).json()["callbacks"]
    assert sent["status"] == 202
    down = requests.post(f"{governance.url}/_callbacks/deletion", json={
        "ubi_url": url, "token": "tok", "tenant_id": TENANT}, timeout=15)
    assert down.status_code == 502


def test_the_stand_in_sends_ubi_a_deletion_it_accepts(governance, app, tokens, broker,
                                                      clean_db) -> None:
    from tests.support.servers import web_thread

    with web_thread(app) as base:
        answer = requests.post(f"{governance.url}/_callbacks/deletion", json={
            "ubi_url": base.removesuffix("/v1/ubi"),
            "token": tokens(TENANT, "ubi:admin:privacy", sub="data-governance"),
            "tenant_id": TENANT, "time_range": {"from": "2025-01-01", "to": "2025-01-31"}},
            timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == 202, answer.json()
    [job] = jobs()
    assert job.job_id == answer.json()["body"]["job_id"] and job.tenant_id == TENANT
    assert (job.time_from, job.time_to) == retention.month_bounds(date(2025, 1, 1))


def test_the_stand_in_is_configured_over_http_and_by_the_cli(governance) -> None:
    bad = requests.put(f"{governance.url}/_policies/{TENANT}",
                       json={"delete_after_months": -1}, timeout=5)
    assert bad.status_code == 400
    policy(governance, delete_after_months=3, policy_id="p")
    ask = {"tenant_id": TENANT, "data_category": "behavioural_events"}
    url = f"{governance.url}/privacy/v1/retention/evaluate"
    assert requests.post(url, json={**ask, "last_activity_months": 3}, timeout=5).json() == {
        "action": "delete", "legal_hold": False, "policy_id": "p"}
    assert requests.post(url, json={**ask, "last_activity_months": 2}, timeout=5).json()[
        "action"] == "retain"
    assert requests.post(url, json={**ask, "tenant_id": "x", "last_activity_months": 2},
                         timeout=5).json() == {"action": "none"}
    assert requests.post(url, json={"tenant_id": TENANT}, timeout=5).status_code == 400
    requests.delete(f"{governance.url}/_policies/{TENANT}", timeout=5).raise_for_status()
    assert requests.get(f"{governance.url}/_policies", timeout=5).json() == {}
    assert GovernanceStandIn(policies={"a": Policy(1)}).policies["a"].delete_after_months == 1
    wrong = CliRunner().invoke(main, ["devserver", "governance", "--policy", "acme"])
    assert wrong.exit_code == 2 and "TENANT=MONTHS" in wrong.output
