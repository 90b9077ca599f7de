"""The signal stream on the real broker (SPEC §12, issue 22): IT-UBI-02, subscriptions and
their filters, disabled classes, a broker cut while publishing, backpressure and overflow,
version order, the per-tenant rate limit, dead letters, and the documented consumer.

Every message a test consumes is validated against ``ubi/schemas/signal_message.schema.json``
(``_take``)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from kombu import Connection, Exchange

from tests.support import stream_messages
from tests.support.organisation import organisation_events
from tests.support.tcp_proxy import TcpProxy
from ubi.analytics.privacy import Pseudonymiser
from ubi.analytics.tenant_config import TenantConfig
from ubi.cli import main as cli
from ubi.integrations import routing
from ubi.integrations.broker import SIGNAL_DLQ, SIGNAL_EXCHANGE, parking_queue_name
from ubi.integrations.signal_dlq import SignalDeadLetters
from ubi.integrations.signal_stream import SignalPublisher
from ubi.models import SignalOutbox, session_factory
from ubi.services import configs, detection, features, ingest, stream, subscriptions
from ubi.store import outbox

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    message_id: str
    routing_key: str
    body: dict[str, Any]
    headers: dict[str, Any]
    redelivered: bool


def _take(broker_url: str, queue: str, limit: int | None = None) -> list[Received]:
    """Consume (and acknowledge) what ``queue`` holds, each message schema-validated."""
    out: list[Received] = []
    with Connection(broker_url) as conn:
        channel = conn.channel()
        while limit is None or len(out) < limit:
            m = channel.basic_get(queue, no_ack=True)
            if m is None:
                break
            doc = stream_messages.validated(m)
            body, headers = doc["body"], doc["headers"]
            out.append(Received(doc["message_id"], doc["routing_key"], body, headers,
                                bool(m.delivery_info.get("redelivered"))))
        channel.close()
    return out


def _depth(broker_url: str, queue: str) -> int:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        _, count, _ = channel.queue_declare(queue, passive=True)
        channel.close()
    return int(count)


@pytest.fixture
def stream_queues(settings, broker, db_session) -> Iterator[dict[str, str]]:
    """The default subscriptions' queues, emptied before and after the test."""
    names = {"mmm": settings.queue_name("ubi.signals.mmm"),
             "detection": settings.queue_name("ubi.signals.detection"),
             "dlq": settings.queue_name(SIGNAL_DLQ)}
    with Connection(settings.broker_url) as conn:
        for q in names.values():
            conn.channel().queue_purge(q)
    yield names
    with Connection(settings.broker_url) as conn:
        for q in names.values():
            with contextlib.suppress(Exception):
                conn.channel().queue_purge(q)


@contextlib.contextmanager
def _subscription(settings, spec: routing.SubscriptionSpec) -> Iterator[str]:
    """A subscription for one test: added (row + queue), removed afterwards."""
    with session_factory()() as s:
        subscriptions.add_subscription(s, spec, settings=settings)
    try:
        yield settings.queue_name(spec.name)
    finally:
        with session_factory()() as s:
            subscriptions.remove_subscription(s, spec.name, force=True, settings=settings)


def _row(signal_id: str, version: int, now: datetime, *, tenant: str = "acme",
         scope: str = "actor", dimension: str = "flow", signal_type: str = "risk",
         cls: str = "burnout_risk", severity: str = "WARN", status: str = "active",
         reason: str = "after_hours_ratio rose") -> dict[str, Any]:
    """An outbox row as detection writes it (a signal version the test controls)."""
    resolved = now.isoformat() if status == "resolved" else None
    payload = {
        "signal_id": signal_id, "tenant_id": tenant, "actor_scope": scope,
        "subject_id": f"subj-{signal_id}", "dimension": dimension, "signal_class": cls,
        "signal_type": signal_type, "score": 71.5, "severity": severity, "confidence": 0.8,
        "status": status, "reason": reason, "evidence_refs": {"feature_ids": ["f1"]},
        "features_snapshot": {"after_hours_ratio": 0.4}, "intent": None,
        "expected_outcome": None, "created_at": now.isoformat(),
        "updated_at": now.isoformat(), "resolved_at": resolved, "version": version,
        "correlation_id": "corr-t"}
    return {"signal_id": signal_id, "version": version, "tenant_id": tenant,
            "routing_key": routing.routing_key(tenant, scope, dimension, signal_type, cls,
                                               severity),
            "payload": payload, "headers": {"tenant_id": tenant, "correlation_id": "corr-t",
                                            "schema_version": "1.0"},
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}


def _insert(rows: list[dict[str, Any]]) -> None:
    with session_factory()() as s:
        outbox.insert_signal_versions(s, rows)
        s.commit()


def _drain(publisher: Any, now: datetime, **kw: Any) -> stream.DrainReport:
    with session_factory()() as s:
        report = stream.drain_signal_outbox(s, publisher, now=now, **kw)
        s.commit()
    return report


def _drain_all(publisher: Any, now: datetime, rounds: int = 30) -> datetime:
    """Drain until nothing is pending, stepping past the backoff each round; the last now."""
    for _ in range(rounds):
        with session_factory()() as s:
            pending = s.execute(sa.select(sa.func.count()).select_from(SignalOutbox).where(
                SignalOutbox.status == "pending")).scalar_one()
        if not pending:
            return now
        _drain(publisher, now)
        now += timedelta(minutes=15)  # past any backoff (at most 10 min)
    raise AssertionError("the outbox never emptied")


def _first_seen_versions(received: list[Received]) -> dict[str, list[int]]:
    """Each signal's versions in the order they first arrived (repeats dropped)."""
    seen: set[str] = set()
    versions: dict[str, list[int]] = {}
    for m in received:
        if m.message_id not in seen:
            seen.add(m.message_id)
            versions.setdefault(m.body["signal_id"], []).append(m.body["version"])
    return versions


# --- IT-UBI-02 -------------------------------------------------------------------------------

def test_it_ubi_02_a_planted_anomaly_reaches_its_subscribers(settings, stream_queues,
                                                             shared_clock) -> None:
    """A planted burnout pattern yields a schema-valid message on ubi.signals.mmm tied to its
    subject; ubi.signals.detection gets WARN and CRITICAL only; a subscription filtered to one
    tenant and one dimension gets exactly those."""
    now = shared_clock.now
    events = organisation_events("acme", end_day=now.date(), until=now, surge_actor="eng03")
    with session_factory()() as s:
        ingest.store_batch(s, batch_id="b1", tenant_id="acme",
                           events_json=json.dumps(events), received_at=now,
                           correlation_id="corr-1",
                           pseudonymiser=Pseudonymiser(settings.pseudonym_secret))
        features.compute_tenant_features(s, "acme")
        detection.detect_tenant(s, "acme", correlation_id="corr-1")
        s.commit()
    # Another tenant's signals in the same dimension, and acme's in another: the filtered
    # subscription must receive none of them.
    _insert([_row("g-1", 1, now, tenant="globex"),
             _row("a-collab", 1, now, dimension="collaboration", signal_type="opportunity",
                  cls="mentoring_potential", severity="INFO")])
    with session_factory()() as s:
        rows = s.execute(sa.select(SignalOutbox).order_by(SignalOutbox.id)).scalars().all()
        expected = {f"{r.signal_id}:{r.version}": r.payload for r in rows}
    assert len(rows) > 2

    spec = routing.SubscriptionSpec(name="t.acme-flow", tenants=("acme",), dimensions=("flow",))
    publisher = SignalPublisher(settings)
    try:
        with _subscription(settings, spec) as flow_queue:
            report = _drain(publisher, shared_clock.now)
            assert report.published == len(rows) and report.failed == report.deferred == 0
            flow = _take(settings.broker_url, flow_queue)
    finally:
        publisher.close()
    mmm = _take(settings.broker_url, stream_queues["mmm"])
    detect = _take(settings.broker_url, stream_queues["detection"])

    assert sorted(m.message_id for m in mmm) == sorted(expected)  # every version, once
    for sid, versions in _first_seen_versions(mmm).items():
        assert versions == sorted(versions), sid
    surge = Pseudonymiser(settings.pseudonym_secret).pseudonym("acme", "eng03")
    burnout = [m for m in mmm if m.body["signal_class"] == "burnout_risk"
               and m.body["actor_scope"] == "actor" and m.body["tenant_id"] == "acme"]
    assert {m.body["subject_id"] for m in burnout} == {surge}, [
        (m.message_id, m.body["subject_id"][:8]) for m in mmm]
    severity = burnout[0].body["severity"]
    assert burnout[0].routing_key == f"acme.actor.flow.risk.burnout_risk.{severity}"
    assert burnout[0].headers["correlation_id"] == "corr-1"
    assert burnout[0].body["features_snapshot"] and burnout[0].body["reason"]

    assert sorted(m.message_id for m in detect) == sorted(
        k for k, p in expected.items() if p["severity"] in ("WARN", "CRITICAL"))
    assert {m.body["severity"] for m in detect} <= {"WARN", "CRITICAL"}

    assert sorted(m.message_id for m in flow) == sorted(
        k for k, p in expected.items() if p["tenant_id"] == "acme" and p["dimension"] == "flow")
    assert surge in {m.body["subject_id"] for m in flow}
    assert all(m.body["tenant_id"] == "acme" and m.body["dimension"] == "flow" for m in flow)
    with session_factory()() as s:
        assert set(s.execute(sa.select(SignalOutbox.status)).scalars()) == {"published"}
        assert stream.drain_signal_outbox(s, publisher, now=shared_clock.now).published == 0


def test_classes_a_tenant_disabled_reach_no_subscription(settings, stream_queues,
                                                         shared_clock) -> None:
    now = shared_clock.now
    _insert([_row("keep-1", 1, now), _row("drop-1", 1, now, cls="context_thrash"),
             _row("drop-2", 1, now, cls="context_thrash", status="resolved",
                  reason="deleted"),  # a deletion's final version: consumers must forget
             _row("other-tenant", 1, now, tenant="globex", cls="context_thrash")])
    with session_factory()() as s:
        document = dict(TenantConfig.default().raw)
        document["disabled_signal_classes"] = ["context_thrash"]
        configs.save_config(s, "acme", document, author="test")
        s.commit()
    spec = routing.SubscriptionSpec(name="t.thrash", signal_classes=("context_thrash",))
    publisher = SignalPublisher(settings)
    try:
        with _subscription(settings, spec) as thrash_queue:
            report = _drain(publisher, shared_clock.now)
            thrash = _take(settings.broker_url, thrash_queue)
    finally:
        publisher.close()
    mmm = _take(settings.broker_url, stream_queues["mmm"])
    assert report.suppressed == 1 and report.published == 3
    assert sorted(m.message_id for m in mmm) == ["drop-2:1", "keep-1:1", "other-tenant:1"]
    assert sorted(m.message_id for m in thrash) == ["drop-2:1", "other-tenant:1"]
    with session_factory()() as s:
        status = dict(s.execute(sa.select(SignalOutbox.signal_id, SignalOutbox.status)).all())
    assert status["drop-1"] == "suppressed"


# --- the broker goes away while signals are produced ----------------------------------------

def _via(broker_url: str, port: int) -> str:
    parts = urlsplit(broker_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def test_a_broker_cut_mid_publish_loses_nothing_and_keeps_versions_in_order(
        settings, stream_queues, shared_clock) -> None:
    upstream = urlsplit(settings.broker_url)
    proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672).start()
    cut_settings = settings.replace(broker_url=_via(settings.broker_url, proxy.port))
    publisher = SignalPublisher(cut_settings)
    now = shared_clock.now
    _insert([_row(f"cut-{i:04d}", v, now) for v in (1, 2) for i in range(1500)])
    cut_done = threading.Event()

    def cut_mid_batch() -> None:  # while the first round's confirms are in flight
        deadline = time.monotonic() + 30
        while publisher._next_tag < 500 and time.monotonic() < deadline:
            time.sleep(0.0005)
        proxy.stop()
        cut_done.set()

    try:
        threading.Thread(target=cut_mid_batch, daemon=True).start()
        first = _drain(publisher, now)
        assert cut_done.wait(30)
        assert first.failed > 0  # the cut hit the drain
        produced_later = [_row(f"cut-{i:04d}", 3, now) for i in range(0, 1500, 10)]
        _insert(produced_later)  # signals keep coming while the broker is unreachable
        down = _drain(publisher, now + timedelta(minutes=15))
        assert down.published == 0
        proxy.start()  # the broker is back; nobody touches the publisher
        _drain_all(publisher, now + timedelta(minutes=30))
    finally:
        publisher.close()
        proxy.stop()
    with session_factory()() as s:
        rows = s.execute(sa.select(SignalOutbox.signal_id, SignalOutbox.version,
                                   SignalOutbox.status)).all()
    assert {status for _, _, status in rows} == {"published"}
    received = _take(settings.broker_url, stream_queues["mmm"])
    assert {m.message_id for m in received} == {f"{sid}:{v}" for sid, v, _ in rows}
    for sid, versions in _first_seen_versions(received).items():
        assert versions == sorted(versions), sid


# --- backpressure and overflow --------------------------------------------------------------

def test_a_full_reject_subscription_holds_rows_in_the_outbox_and_gets_them_in_order(
        settings, stream_queues, shared_clock) -> None:
    now = shared_clock.now
    _insert([_row(f"bp-{i}", v, now, tenant="bp") for v in (1, 2, 3) for i in range(4)])
    spec = routing.SubscriptionSpec(name="t.bounded-reject", tenants=("bp",),
                                    overflow="reject", max_length=5)
    publisher = SignalPublisher(settings)
    try:
        with _subscription(settings, spec) as queue:
            first = _drain(publisher, now)
            # A quorum queue notices it is full a little late: publishes already in flight
            # get in (8 of 12 here), the rest are refused.
            assert 5 <= first.published < 12 and first.failed > 0
            with session_factory()() as s:
                held = s.execute(sa.select(SignalOutbox).where(
                    SignalOutbox.status == "pending").order_by(SignalOutbox.id)).scalars().all()
                assert len(held) == 12 - first.published
                assert any("nack" in (r.last_error or "").lower() for r in held)
            stuck = _drain(publisher, now + timedelta(minutes=15))
            assert stuck.published == 0  # still full: nothing more goes out
            got = _take(settings.broker_url, queue)  # the consumer catches up
            _drain_all(publisher, now + timedelta(minutes=30))
            got += _take(settings.broker_url, queue)
    finally:
        publisher.close()
    assert {m.message_id for m in got} == {f"bp-{i}:{v}" for v in (1, 2, 3) for i in range(4)}
    assert len(got) == 12  # the full queue refused them: no duplicates in it
    for sid, versions in _first_seen_versions(got).items():
        assert versions == [1, 2, 3], sid


def test_a_full_park_subscription_holds_back_no_one_and_parks_its_overflow(
        settings, stream_queues, shared_clock) -> None:
    now = shared_clock.now
    _insert([_row(f"pk-{i:02d}", 1, now, tenant="pk") for i in range(40)])
    spec = routing.SubscriptionSpec(name="t.bounded-park", tenants=("pk",), max_length=5)
    publisher = SignalPublisher(settings)
    try:
        with _subscription(settings, spec) as queue:
            report = _drain(publisher, now)
            # Every publish confirmed at once: the full queue refused nothing.
            assert report.published == 40 and report.failed == report.deferred == 0
            parking = parking_queue_name(queue)
            assert _depth(settings.broker_url, parking) == 35
            kept = _take(settings.broker_url, queue)
            assert [m.message_id for m in kept] == [f"pk-{i:02d}:1" for i in range(35, 40)]
            letters = SignalDeadLetters(settings, parking_queue_name(spec.name))
            listed = letters.list(limit=100)
            parked = [f"pk-{i:02d}:1" for i in range(35)]  # the oldest: dropped from the head
            assert sorted(x.message_id for x in listed) == parked
            assert {x.reason for x in listed} == {"maxlen"} and listed[0].queue == queue
            assert len(letters.retry(all_messages=True, limit=5)) == 5
            redriven = _take(settings.broker_url, queue)
            # (a quorum queue requeues what a listing returned in no set order)
            assert len(redriven) == 5 and {m.message_id for m in redriven} <= set(parked)
            assert all(m.headers["x-ubi-redrives"] == 1 for m in redriven)
            assert {m.routing_key for m in redriven} == {"pk.actor.flow.risk.burnout_risk.WARN"}
            assert _depth(settings.broker_url, parking) == 30
    finally:
        publisher.close()
    mmm = _take(settings.broker_url, stream_queues["mmm"])
    assert sorted(m.message_id for m in mmm) == [f"pk-{i:02d}:1" for i in range(40)]


def test_a_rejected_message_is_dead_lettered_and_redriven_to_its_queue_only(
        settings, stream_queues, shared_clock) -> None:
    now = shared_clock.now
    _insert([_row("rej-1", 1, now, tenant="rj")])
    spec = routing.SubscriptionSpec(name="t.rejecting", tenants=("rj",))
    publisher = SignalPublisher(settings)
    runner = CliRunner()
    try:
        with _subscription(settings, spec) as queue:
            assert _drain(publisher, now).published == 1
            _take(settings.broker_url, stream_queues["mmm"])
            with Connection(settings.broker_url) as conn:
                channel = conn.channel()
                m = channel.basic_get(queue, no_ack=False)
                channel.basic_reject(m.delivery_info["delivery_tag"], requeue=False)
                channel.close()
            from tests.support.waiting import wait_until

            wait_until(lambda: _depth(settings.broker_url, stream_queues["dlq"]) == 1, 10)
            listed = runner.invoke(cli, ["stream", "dlq", "list", "--json"])
            assert listed.exit_code == 0, listed.output
            [letter] = json.loads(listed.output)
            assert letter["message_id"] == "rej-1:1" and letter["reason"] == "rejected"
            assert letter["queue"] == queue and letter["tenant_id"] == "rj"
            retried = runner.invoke(cli, ["stream", "dlq", "retry", "rej-1:1"])
            assert retried.exit_code == 0 and "re-driven: 1" in retried.output
            back = _take(settings.broker_url, queue)
    finally:
        publisher.close()
    assert [m.message_id for m in back] == ["rej-1:1"]
    assert _take(settings.broker_url, stream_queues["mmm"]) == []  # nobody else got it again
    assert _depth(settings.broker_url, stream_queues["dlq"]) == 0


# --- order, fairness ------------------------------------------------------------------------

def test_versions_arrive_in_order_and_a_resolution_is_a_new_version(
        settings, stream_queues, shared_clock) -> None:
    now = shared_clock.now
    rows = []
    for v in (1, 2, 3):  # interleaved with other signals, all due in one drain
        rows.append(_row("ord-1", v, now, severity="CRITICAL" if v == 2 else "WARN",
                         status="resolved" if v == 3 else "active"))
        rows += [_row(f"ord-x{v}-{i}", 1, now) for i in range(50)]
    _insert(rows)
    publisher = SignalPublisher(settings)
    try:
        report = _drain(publisher, now)
    finally:
        publisher.close()
    assert report.published == len(rows) and report.failed == report.deferred == 0
    mmm = _take(settings.broker_url, stream_queues["mmm"])
    mine = [m for m in mmm if m.body["signal_id"] == "ord-1"]
    assert [m.body["version"] for m in mine] == [1, 2, 3]
    assert [m.body["status"] for m in mine] == ["active", "active", "resolved"]
    assert mine[-1].body["resolved_at"] is not None
    assert [m.routing_key for m in mine] == [
        "acme.actor.flow.risk.burnout_risk.WARN", "acme.actor.flow.risk.burnout_risk.CRITICAL",
        "acme.actor.flow.risk.burnout_risk.WARN"]


def test_a_noisy_tenant_is_rate_limited_and_starves_no_one(settings, stream_queues,
                                                            shared_clock) -> None:
    now = shared_clock.now
    _insert([_row(f"noisy-{i:03d}", 1, now, tenant="noisy") for i in range(300)]
            + [_row(f"quiet-{i}", 1, now, tenant="quiet") for i in range(3)])
    publisher = SignalPublisher(settings)
    limits = {"rate_per_s": 50.0, "burst": 100.0}
    try:
        first = _drain(publisher, now, **limits)
        again = _drain(publisher, now, **limits)  # same instant: the bucket is empty
        later = _drain(publisher, now + timedelta(seconds=1), **limits)  # 50 tokens back
    finally:
        publisher.close()
    mmm = _take(settings.broker_url, stream_queues["mmm"])
    assert first.published == 103 and again.published == 0 and again.rate_limited == ["noisy"]
    assert later.published == 50
    tenants = [m.body["tenant_id"] for m in mmm]
    assert tenants.count("quiet") == 3 and tenants.count("noisy") == 150


# --- the contract in the docs ---------------------------------------------------------------

def _documented_consumer() -> dict[str, Any]:
    text = (ROOT / "docs" / "stream.md").read_text()
    section = text.split("## Consumer example", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "docs/stream.md", "exec"), namespace)
    return namespace


class _Crash(Exception):
    pass


class _CrashAfterRecording(set[str]):
    """A de-dup store whose first ``add`` succeeds and then the consumer dies before its ack."""

    crashed = False

    def add(self, item: str) -> None:
        super().add(item)
        if not self.crashed:
            self.crashed = True
            raise _Crash(item)


def test_the_documented_consumer_deduplicates_a_redelivered_message(
        settings, stream_queues, shared_clock) -> None:
    example = _documented_consumer()
    now = shared_clock.now
    _insert([_row("doc-1", 1, now), _row("doc-1", 2, now), _row("doc-2", 1, now)])
    publisher = SignalPublisher(settings)
    try:
        assert _drain(publisher, now).published == 3
        with session_factory()() as s:  # the same version published twice (at-least-once)
            s.execute(sa.update(SignalOutbox).where(SignalOutbox.signal_id == "doc-2").values(
                status="pending"))
            s.commit()
        assert _drain(publisher, now).published == 1
    finally:
        publisher.close()
    handled: list[tuple[str, int]] = []

    def handle(signal: dict[str, Any]) -> None:
        handled.append((signal["signal_id"], signal["version"]))
        example["keep_latest"](signal)

    seen = _CrashAfterRecording()
    with pytest.raises(_Crash):  # handled doc-1:1, recorded it, died before the ack
        example["consume"](settings.broker_url, stream_queues["mmm"], seen, handle,
                           idle_seconds=1.0)
    example["consume"](settings.broker_url, stream_queues["mmm"], seen, handle,
                       idle_seconds=1.0)
    assert sorted(handled) == [("doc-1", 1), ("doc-1", 2), ("doc-2", 1)]  # each once
    assert seen == {"doc-1:1", "doc-1:2", "doc-2:1"}
    assert example["latest"]["doc-1"]["version"] == 2
    assert _depth(settings.broker_url, stream_queues["mmm"]) == 0  # everything acknowledged


# --- commands -------------------------------------------------------------------------------

def test_subscriptions_are_managed_from_the_command_line(settings, broker, database) -> None:
    runner = CliRunner()
    added = runner.invoke(cli, ["subscriptions", "add", "t.cli-sub", "--tenant", "acme.eu",
                                "--dimension", "flow,activity", "--min-severity", "CRITICAL"])
    assert added.exit_code == 0, added.output
    queue = settings.queue_name("t.cli-sub")
    try:
        assert json.loads(added.output)["bindings"] == [
            "acme%2Eeu.*.flow.*.*.CRITICAL", "acme%2Eeu.*.activity.*.*.CRITICAL"]
        assert _depth(settings.broker_url, queue) == 0
        assert _depth(settings.broker_url, parking_queue_name(queue)) == 0
        listed = runner.invoke(cli, ["subscriptions", "list", "--json"])
        by_name = {d["name"]: d for d in json.loads(listed.output)}
        assert {"ubi.signals.mmm", "ubi.signals.detection", "t.cli-sub"} <= set(by_name)
        assert by_name["ubi.signals.detection"]["bindings"] == ["*.*.*.*.*.WARN",
                                                                "*.*.*.*.*.CRITICAL"]
        assert by_name["t.cli-sub"]["queue"] == queue and by_name["t.cli-sub"]["depth"] == 0
        again = runner.invoke(cli, ["subscriptions", "add", "t.cli-sub"])
        assert again.exit_code != 0 and "exists" in again.output
        bad = runner.invoke(cli, ["subscriptions", "add", "t.bad", "--class", "nosuch"])
        assert bad.exit_code != 0 and "signal_classes" in bad.output
    finally:
        removed = runner.invoke(cli, ["subscriptions", "remove", "t.cli-sub"])
    assert removed.exit_code == 0, removed.output
    from tests.support import resources

    assert not resources.queue_exists(settings.broker_url, queue)
    assert not resources.queue_exists(settings.broker_url, parking_queue_name(queue))


def test_an_unroutable_message_stays_pending_and_is_retried(settings, db_session,
                                                            broker, shared_clock) -> None:
    lonely = settings.replace(queue_prefix=settings.queue_prefix + "lonely.")
    exchange = Exchange(lonely.queue_name(SIGNAL_EXCHANGE), type="topic", durable=True)
    with Connection(settings.broker_url) as conn:
        exchange.bind(conn.channel()).declare()  # an exchange with no queue bound
    now = shared_clock.now
    _insert([_row("s-1", 1, now - timedelta(seconds=1)), _row("s-1", 2, now)])
    publisher = SignalPublisher(lonely)
    try:
        report = _drain(publisher, now)
    finally:
        publisher.close()
        with Connection(settings.broker_url) as conn:
            conn.channel().exchange_delete(exchange.name)
    assert report.published == 0 and report.failed == 1 and report.deferred == 1
    rows = db_session.execute(sa.select(SignalOutbox).order_by(SignalOutbox.version)
                              ).scalars().all()
    assert [r.status for r in rows] == ["pending", "pending"]
    assert rows[0].attempts == 1 and "NO_ROUTE" in rows[0].last_error.upper().replace(" ", "_")
    assert rows[0].next_attempt_at > now
    assert rows[1].attempts == 0  # version 2 waits for version 1
