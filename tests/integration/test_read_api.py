"""The read side over HTTP (SPEC §5.4-§5.6, §6, §7, §10), on data the real pipeline produced:
one tenant of 16 people in three teams (the third has 4, under min_team_size) over three
weeks ending this Wednesday morning, one of whom works late in the last week, stored,
computed and evaluated by the services the workers run, once for the whole module."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.organisation import NOW, acme_like
from tests.support.pipeline import run_pipeline
from ubi.analytics.privacy import Pseudonymiser
from ubi.analytics.taxonomy import FEATURES
from ubi.models import (
    AuditEntry,
    Baseline,
    ReceiptOutbox,
    Signal,
    SignalFeedback,
    TenantConfigVersion,
    session_factory,
)
from ubi.services import baselines, configs

YESTERDAY = NOW.date() - timedelta(days=1)
PSEUDONYM = re.compile(r"[0-9a-f]{64}")
NEW_ROUTES = [
    ("get", "/v1/ubi/actors/eng03/profile?tenant_id=acme"),
    ("get", "/v1/ubi/teams/alpha/summary?tenant_id=acme"),
    ("get", "/v1/ubi/tenants/acme/summary"),
    ("post", "/v1/ubi/query/signals"),
    ("get", "/v1/ubi/signals/recent?tenant_id=acme&actor_id=eng03"),
    ("post", "/v1/ubi/signals/unknown/feedback"),
    ("put", "/v1/ubi/config/acme"),
    ("get", "/v1/ubi/config/acme/versions"),
    ("get", "/v1/ubi/export?tenant_id=acme&from=2026-06-01&to=2026-06-16"),
]


@pytest.fixture(autouse=True)
def wednesday(shared_clock) -> None:
    shared_clock.now = NOW


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(client, method: str, url: str, token: str | None, **kw: Any):
    return getattr(client, method)(url, headers=auth(token) if token else {}, **kw)


ALL_READ = ("ubi:read:actor", "ubi:read:team", "ubi:read:tenant")


def test_every_new_route_needs_a_token_and_the_right_role_and_tenant(client, tokens, acme
                                                                     ) -> None:
    for method, url in NEW_ROUTES:
        body = {"json": {"tenant_id": "acme"}} if method in ("post", "put") else {}
        assert call(client, method, url, None, **body).status_code == 401, url
        # A token of the tenant with a role that is not the endpoint's.
        wrong = tokens("acme", "ubi:write:events")
        assert call(client, method, url, wrong, **body).status_code == 403, url
    other = tokens("globex", *ALL_READ, "ubi:write:config")
    for method, url in NEW_ROUTES:
        if "feedback" in url:
            continue  # a signal id: another tenant's is unknown (404), tested below
        body = {"json": {"tenant_id": "acme"}} if method in ("post", "put") else {}
        resp = call(client, method, url, other, **body)
        assert resp.status_code == 403, (url, resp.json)
        assert resp.json["code"] == "forbidden"


def test_a_privileged_read_of_another_tenant_is_audited(client, tokens, acme) -> None:
    ops = tokens("ops", "product_ops", sub="ops-person")
    resp = client.get("/v1/ubi/tenants/acme/summary", headers=auth(ops))
    assert resp.status_code == 200, resp.json
    with session_factory()() as s:
        entries = s.execute(sa.select(AuditEntry).where(
            AuditEntry.action == "read.cross_tenant")).scalars().all()
    assert [(e.tenant_id, e.principal, e.details["endpoint"]) for e in entries] == [
        ("acme", "ops-person", "tenants/summary")]
    own = tokens("acme", "ubi:read:tenant")
    assert client.get("/v1/ubi/tenants/acme/summary", headers=auth(own)).status_code == 200
    with session_factory()() as s:  # reading one's own tenant is not audited
        assert s.execute(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "read.cross_tenant")).scalar_one() == 1


def _team_reader_responses(client, tokens) -> list[str]:
    token = tokens("acme", "ubi:read:team", "ubi:read:tenant")
    texts = []
    for url in ("/v1/ubi/teams/alpha/summary?tenant_id=acme", "/v1/ubi/tenants/acme/summary",
                "/v1/ubi/export?tenant_id=acme&from=2026-05-01&to=2026-06-17&format=jsonl",
                "/v1/ubi/export?tenant_id=acme&from=2026-05-01&to=2026-06-17&format=csv"):
        resp = client.get(url, headers=auth(token))
        assert resp.status_code == 200, (url, resp.data[:300])
        texts.append(resp.get_data(as_text=True))
    resp = client.post("/v1/ubi/query/signals", headers=auth(token),
                       json={"tenant_id": "acme", "page_size": 500})
    assert resp.status_code == 200
    assert all(s["actor_scope"] != "actor" for s in resp.json["signals"])
    texts.append(resp.get_data(as_text=True))
    return texts


def test_a_team_reader_never_sees_an_actor_id_or_pseudonym(client, tokens, settings, acme
                                                           ) -> None:
    alias = Pseudonymiser(settings.pseudonym_secret)
    forbidden = {f"eng{i:02d}" for i in range(16)} | {
        alias.pseudonym("acme", f"eng{i:02d}") for i in range(16)}
    for text in _team_reader_responses(client, tokens):
        assert not any(word in text for word in forbidden)
        assert not PSEUDONYM.search(text)
    actor_only = tokens("acme", "ubi:read:team")
    resp = client.post("/v1/ubi/query/signals", headers=auth(actor_only),
                       json={"tenant_id": "acme", "scope": "actor"})
    assert resp.status_code == 403
    resp = client.post("/v1/ubi/query/signals", headers=auth(actor_only),
                       json={"tenant_id": "acme", "filters": {"actor_ids": ["eng03"]}})
    assert resp.status_code == 403 and "actor_ids" in resp.json["message"]


def test_a_team_under_min_team_size_reads_like_an_unknown_team(client, tokens, acme) -> None:
    token = tokens("acme", "ubi:read:team")
    tiny = client.get("/v1/ubi/teams/tiny/summary?tenant_id=acme", headers=auth(token))
    unknown = client.get("/v1/ubi/teams/nobody/summary?tenant_id=acme", headers=auth(token))
    assert tiny.status_code == unknown.status_code == 404
    assert tiny.json["message"].replace("tiny", "X") == unknown.json["message"].replace(
        "nobody", "X")
    assert set(tiny.json) == set(unknown.json)
    alpha = client.get("/v1/ubi/teams/alpha/summary?tenant_id=acme", headers=auth(token))
    assert alpha.status_code == 200 and alpha.json["team"]["actors"] == 6
    summary = client.get("/v1/ubi/tenants/acme/summary",
                         headers=auth(tokens("acme", "ubi:read:tenant"))).json
    assert sorted(t["team_id"] for t in summary["teams"]) == ["alpha", "beta"]
    export = client.get("/v1/ubi/export?tenant_id=acme&from=2026-05-01&to=2026-06-17",
                        headers=auth(tokens("acme", "ubi:read:tenant")))
    rows = [json.loads(line) for line in export.get_data(as_text=True).splitlines()]
    assert rows and {r["actor_scope"] for r in rows} <= {"team", "cohort", "tenant"}
    assert {r["subject_id"] for r in rows if r["actor_scope"] == "team"} == {"alpha", "beta"}


def test_the_export_as_csv_has_a_header_and_the_same_rows(client, tokens, acme) -> None:
    token = tokens("acme", "ubi:read:tenant")
    url = "/v1/ubi/export?tenant_id=acme&from=2026-06-10&to=2026-06-16"
    # (Each streamed body is read before the next request: the test client shares one
    # request-context stack between responses still streaming.)
    jsonl = client.get(url + "&format=jsonl", headers=auth(token))
    lines = [json.loads(x) for x in jsonl.get_data(as_text=True).splitlines()]
    as_csv = client.get(url + "&format=csv", headers=auth(token))
    table = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert jsonl.mimetype == "application/x-ndjson" and as_csv.mimetype == "text/csv"
    assert len(lines) == len(table) > 0
    assert [(r["subject_id"], r["feature_name"], r["day"]) for r in table] == [
        (r["subject_id"], r["feature_name"], r["day"]) for r in lines]
    assert all("2026-06-10" <= r["day"] <= "2026-06-16" for r in lines)
    bad = client.get("/v1/ubi/export?tenant_id=acme&from=2026-06-16&to=2026-06-10",
                     headers=auth(token))
    assert bad.status_code == 422 and "query.from" in bad.json["errors"]


def test_a_signal_read_over_http_is_the_stored_signal(client, tokens, settings, acme) -> None:
    token = tokens("acme", *ALL_READ)
    resp = client.get("/v1/ubi/signals/recent?tenant_id=acme&actor_id=eng03&limit=10",
                      headers=auth(token))
    assert resp.status_code == 200, resp.json
    signals = resp.json["signals"]
    assert signals and all(s["actor_id"] == "eng03" for s in signals)
    assert [s["updated_at"] for s in signals] == sorted((s["updated_at"] for s in signals),
                                                        reverse=True)
    assert "burnout_risk" in {s["signal_class"] for s in signals}
    assert resp.json["stale"] in (True, False)
    with session_factory()() as s:
        stored = {r.signal_id: r for r in s.execute(sa.select(Signal)).scalars()}
    for sig in signals:
        row = stored[sig["signal_id"]]
        assert (sig["reason"], sig["evidence_refs"], sig["features_snapshot"], sig["version"]
                ) == (row.reason, row.evidence_refs, row.features_snapshot, row.version)
        assert sig["subject_id"] == Pseudonymiser(settings.pseudonym_secret).pseudonym(
            "acme", "eng03")
    nobody = client.get("/v1/ubi/signals/recent?tenant_id=acme&actor_id=ghost",
                        headers=auth(token))
    assert nobody.status_code == 200 and nobody.json["signals"] == []


def test_the_actor_profile_explains_the_actor(client, tokens, acme) -> None:
    token = tokens("acme", "ubi:read:actor")
    resp = client.get("/v1/ubi/actors/eng03/profile?tenant_id=acme&window=24h",
                      headers=auth(token))
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["actor"]["actor_id"] == "eng03" and body["actor"]["team_id"] == "beta"
    assert body["as_of"] == str(YESTERDAY) and body["window"] == "24h"
    by_name = {f["feature_name"]: f for f in body["features"]}
    late = by_name["after_hours_ratio"]
    assert late["value"] > 0.5 and late["baseline"]["mean"] < late["value"]
    base = late["baseline"]  # z as SPEC §5.3 defines it, from the figures it shows
    assert late["z"] == pytest.approx((late["value"] - base["mean"]) / base["std_dev"], abs=1e-3)
    assert late["z"] > 1
    assert "flow" in body["scores"] and body["signals"]["flow"]
    unknown = client.get("/v1/ubi/actors/ghost/profile?tenant_id=acme", headers=auth(token))
    assert unknown.status_code == 404 and "acme" in unknown.json["message"]
    bad = client.get("/v1/ubi/actors/eng03/profile?tenant_id=acme&window=1y",
                     headers=auth(token))
    assert bad.status_code == 422 and "window" in json.dumps(bad.json["errors"])


def test_config_writes_are_versioned_receipted_and_validated(client, tokens, acme) -> None:
    writer = tokens("acme", "ubi:write:config", sub="lead@acme")
    bad = client.put("/v1/ubi/config/acme", headers=auth(writer), json={
        "anomaly_thresholds": {"default": {"warn": 4.0, "critical": 3.0}}})
    assert bad.status_code == 400
    assert bad.json["errors"] == {"anomaly_thresholds.default.warn":
                                  "warn must not exceed critical"}
    unknown_key = client.put("/v1/ubi/config/acme", headers=auth(writer), json={"colour": 1})
    assert unknown_key.status_code == 400 and unknown_key.json["errors"] == {
        "colour": "unknown key"}
    good = client.put("/v1/ubi/config/acme", headers=auth(writer), json={
        "anomaly_thresholds": {"default": {"warn": 2.5, "critical": 4.0}}})
    assert good.status_code == 200, good.json
    assert good.json["config"]["anomaly_thresholds"]["default"]["critical"] == 4.0
    reader = tokens("acme", "ubi:read:tenant")
    current = client.get("/v1/ubi/config/acme", headers=auth(reader)).json
    assert current["version"] == good.json["version"]
    versions = client.get("/v1/ubi/config/acme/versions", headers=auth(reader)).json
    kinds = [(v["kind"], v["author"]) for v in versions["versions"]]
    assert kinds[:3] == [("applied", "lead@acme"), ("rejected", "lead@acme"),
                         ("rejected", "lead@acme")]
    assert versions["versions"][0]["diff"] == [{
        "path": "anomaly_thresholds.default.critical", "old": 3.5, "new": 4.0}]
    with session_factory()() as s:
        receipts = {r.receipt_id: r.payload for r in s.execute(sa.select(ReceiptOutbox).where(
            ReceiptOutbox.resource_type == "config")).scalars()}
        rows = s.execute(sa.select(TenantConfigVersion).where(
            TenantConfigVersion.tenant_id == "acme")).scalars().all()
    assert {r.receipt_id for r in rows} == set(receipts)
    applied = receipts[good.json["receipt_id"]]
    assert applied["gate_id"] == "ubi" and applied["resource_type"] == "config"
    assert applied["decision"]["status"] == "pass"
    assert applied["policy_version_ids"] == [f"ubi-config:acme:v{good.json['version']}"]
    assert sorted(p["decision"]["status"] for p in receipts.values()) == ["pass", "warn",
                                                                          "warn"]
    # Back to the defaults for the other tests of the module.
    assert client.put("/v1/ubi/config/acme", headers=auth(writer), json={}).status_code == 200


def test_feedback_is_one_changeable_verdict_per_reader(client, tokens, acme) -> None:
    with session_factory()() as s:
        signal_id = s.execute(sa.select(Signal.signal_id).where(
            Signal.tenant_id == "acme", Signal.signal_class == "burnout_risk",
            Signal.actor_scope == "actor")
        ).scalars().first()
    url = f"/v1/ubi/signals/{signal_id}/feedback"
    lead = tokens("acme", "ubi:read:actor", sub="lead")
    first = client.post(url, headers=auth(lead), json={"verdict": "false_positive",
                                                        "note": "on call this week"})
    assert first.status_code == 200, first.json
    again = client.post(url, headers=auth(lead), json={"verdict": "useful"})
    assert again.json["feedback_id"] == first.json["feedback_id"]
    other = client.post(url, headers=auth(tokens("acme", "ubi:read:actor", sub="peer")),
                        json={"verdict": "useful"})
    assert other.status_code == 200
    with session_factory()() as s:
        rows = sorted((r.submitted_by, r.verdict) for r in s.execute(
            sa.select(SignalFeedback)).scalars())
    assert rows == [("lead", "useful"), ("peer", "useful")]
    team_only = client.post(url, headers=auth(tokens("acme", "ubi:read:team")),
                            json={"verdict": "useful"})
    assert team_only.status_code == 403  # an actor signal needs ubi:read:actor
    elsewhere = client.post(url, headers=auth(tokens("globex", *ALL_READ)),
                            json={"verdict": "useful"})
    assert elsewhere.status_code == 404  # another tenant's signal is unknown
    # A privileged caller of another tenant names the signal alone (by its id index).
    ops = client.post(url, headers=auth(tokens("ops", "product_ops", sub="ops-person")),
                      json={"verdict": "useful"})
    assert ops.status_code == 200, ops.json
    with session_factory()() as s:
        assert s.execute(sa.select(SignalFeedback.tenant_id).where(
            SignalFeedback.submitted_by == "ops-person")).scalars().all() == ["acme"]
    bad = client.post(url, headers=auth(lead), json={"verdict": "meh"})
    assert bad.status_code == 422 and "verdict" in bad.json["errors"]


def test_disabled_classes_are_neither_stored_nor_returned(client, tokens, settings, acme,
                                                          shared_clock) -> None:
    token = tokens("acme", *ALL_READ, "ubi:write:config")
    query = {"tenant_id": "acme", "page_size": 500}
    before = client.post("/v1/ubi/query/signals", headers=auth(token), json=query).json
    fired = {s["signal_class"] for s in before["signals"] if s["actor_scope"] == "actor"}
    assert "burnout_risk" in fired, fired
    # A twin of acme with the default config, for the contrast: same history, same new day.
    run_pipeline(settings, "twin", acme_like("twin", end_day=NOW.date(), until=NOW))
    # A whole signal type off (the acme organisation raises risks; its evenings are no
    # informational change any more since after_hours_activity fires on changes only)
    resp = client.put("/v1/ubi/config/acme", headers=auth(token), json={
        "enabled_signal_types": ["opportunity", "informational"]})
    assert resp.status_code == 200
    try:
        after = client.post("/v1/ubi/query/signals", headers=auth(token), json=query).json
        assert after["signals"] is not None and "risk" not in {
            s["signal_type"] for s in after["signals"]}
        # The next day evaluated: the twin stores (fires) burnout_risk again, acme does not.
        shared_clock.now = NOW + timedelta(days=1)
        new_day = NOW.date()
        for tenant in ("acme", "twin"):
            events = acme_like(tenant, end_day=NOW.date() + timedelta(days=1), days=2,
                               surge_days=2, seed=11, until=NOW + timedelta(days=1))
            run_pipeline(settings, tenant, [e for e in events
                                            if e["occurred_at"] >= str(new_day)])
        with session_factory()() as s:
            fired_on = dict(s.execute(sa.select(Signal.tenant_id, sa.func.max(
                Signal.last_fired_day)).where(Signal.signal_class == "burnout_risk")
                .group_by(Signal.tenant_id)).all())
        assert fired_on["twin"] == new_day, fired_on
        assert fired_on["acme"] is not None, fired_on
        assert fired_on["acme"] < new_day, fired_on
    finally:
        client.put("/v1/ubi/config/acme", headers=auth(token), json={})


def expected_order(n: int) -> list[str]:
    """``walk-i`` was created (i // 3) seconds before the base time: newest first, ties by id
    descending."""
    return sorted((f"walk-{i:05d}" for i in range(n)), key=lambda sid: (-(int(sid[5:]) // 3),
                                                                        sid), reverse=True)


def test_a_cursor_walk_returns_every_signal_once_in_order_while_new_ones_arrive(
        client, tokens, acme) -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)

    def add(n: int, start: int, at: datetime) -> None:
        with session_factory()() as s:
            s.add_all(Signal(
                signal_id=f"walk-{start + i:05d}", tenant_id="acme", actor_scope="team",
                subject_id="alpha", team_id="alpha", dimension="flow",
                signal_class="context_thrash", signal_type="risk", score=40.0,
                severity="WARN", confidence=0.9, status="resolved", reason="r",
                evidence_refs={}, features_snapshot={}, day=date(2026, 6, 1),
                correlation_id=None, created_at=at - timedelta(seconds=(start + i) // 3),
                updated_at=at, resolved_at=at, version=1, first_day=date(2026, 6, 1),
                last_fired_day=date(2026, 6, 1), days_without_fire=0, triggers=[])
                for i in range(n))
            s.commit()

    add(2500, 0, base)
    token = tokens("acme", "ubi:read:team")
    query = {"tenant_id": "acme", "scope": "team", "page_size": 137,
             "filters": {"status": "resolved"}}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        resp = client.post("/v1/ubi/query/signals", headers=auth(token),
                           json={**query, "cursor": cursor})
        assert resp.status_code == 200, resp.json
        seen += [s["signal_id"] for s in resp.json["signals"] if s["signal_id"].startswith(
            "walk-")]
        cursor = resp.json["next_cursor"]
        pages += 1
        if pages == 3:  # newer signals are stored while the walk goes on
            add(50, 90000, NOW)
        if cursor is None:
            break
    # Newest first: created_at descending, then signal id descending.
    assert seen == expected_order(2500)
    assert pages >= 2500 // 137
    bad = client.post("/v1/ubi/query/signals", headers=auth(token),
                      json={**query, "cursor": "not-a-cursor"})
    assert bad.status_code == 400 and "cursor" in bad.json["errors"]
    with session_factory()() as s:
        s.execute(sa.delete(Signal).where(Signal.signal_id.like("walk-%")))
        s.commit()


def test_new_normal_reanchors_the_actors_baselines_until_undone(client, tokens, acme) -> None:
    with session_factory()() as s:
        signal = s.execute(sa.select(Signal).where(
            Signal.tenant_id == "acme", Signal.actor_scope == "actor",
            Signal.signal_class == "burnout_risk")
            .order_by(Signal.day.desc())).scalars().first()
        assert signal is not None
        triggers = {t.split(".")[0] for t in signal.triggers}
        signal_id, subject, day = signal.signal_id, signal.subject_id, signal.day

    def stored_baselines() -> dict[tuple[str, str], tuple[int, float]]:
        with session_factory()() as s:
            baselines.recompute_baselines(s, "acme", now=NOW)
            s.commit()
            return {(b.feature_name, b.window): (b.n_observations, b.confidence)
                    for b in s.execute(sa.select(Baseline).where(
                        Baseline.tenant_id == "acme", Baseline.subject_id == subject,
                        Baseline.day_type == "workday")).scalars()}

    before = stored_baselines()
    url = f"/v1/ubi/signals/{signal_id}/feedback"
    lead = tokens("acme", "ubi:read:actor", sub="lead")
    resp = client.post(url, headers=auth(lead), json={"verdict": "new_normal"})
    assert resp.status_code == 200, resp.json
    assert set(resp.json["anchored_features"]) == triggers
    listed = client.get("/v1/ubi/baselines/anchors?tenant_id=acme", headers=auth(lead)).json
    assert {(a["feature_name"], a["anchor_day"], a["signal_id"]) for a in listed["anchors"]} == {
        (f, str(day), signal_id) for f in triggers}
    # The next computation learns those features from the days after the signal's day only
    # (a fresh warm-up); the actor's other features keep their whole history.
    after = stored_baselines()
    days_after = (YESTERDAY - day).days
    for (feature, window), (n, confidence) in after.items():
        if feature in triggers:
            assert n <= days_after < before[(feature, window)][0] and confidence < 0.5
        else:
            assert (n, confidence) == before[(feature, window)]
    team_reader = client.get("/v1/ubi/baselines/anchors?tenant_id=acme",
                             headers=auth(tokens("acme", "ubi:read:team")))
    assert team_reader.status_code == 403  # anchors name actors' pseudonyms
    # Only an admin undoes an anchor; it stays listed as undone, and the history is back.
    anchor_id = listed["anchors"][0]["anchor_id"]
    assert client.delete(f"/v1/ubi/baselines/anchors/{anchor_id}?tenant_id=acme",
                         headers=auth(lead)).status_code == 403
    root = tokens("acme", "admin", sub="root")
    assert client.delete("/v1/ubi/baselines/anchors/no%00such?tenant_id=acme",
                         headers=auth(root)).status_code == 404
    undone = client.delete(f"/v1/ubi/baselines/anchors/{anchor_id}?tenant_id=acme",
                           headers=auth(root))
    assert undone.status_code == 200 and undone.json["undo_reason"] == "undone_by_admin"
    # Changing the verdict releases the rest.
    assert client.post(url, headers=auth(lead), json={"verdict": "useful"}).status_code == 200
    assert stored_baselines() == before
    everything = client.get("/v1/ubi/baselines/anchors?tenant_id=acme&include_undone=true",
                            headers=auth(lead)).json["anchors"]
    assert sorted(a["undo_reason"] for a in everything) == sorted(
        ["undone_by_admin"] + ["verdict_changed"] * (len(triggers) - 1))
    with session_factory()() as s:
        actions = [a for (a,) in s.execute(sa.select(AuditEntry.action).where(
            AuditEntry.action.like("baseline.%")))]
    released = ["baseline.anchor_released"] if len(triggers) > 1 else []
    assert sorted(set(actions)) == [*released, "baseline.anchor_undone", "baseline.anchored"]
    with session_factory()() as s:  # the other tests of the module see no feedback
        s.execute(sa.delete(SignalFeedback))
        s.commit()


def test_false_positives_propose_raised_thresholds_an_admin_accepts(client, tokens, acme) -> None:
    with session_factory()() as s:
        flow = s.execute(sa.select(Signal.signal_id).where(
            Signal.tenant_id == "acme", Signal.dimension == "flow",
            Signal.actor_scope == "actor")).scalars().all()
    assert len(flow) >= 1
    readers = [tokens("acme", *ALL_READ, sub=f"reader{i}") for i in range(3)]
    verdicts = []
    for i, token in enumerate(readers):
        resp = client.post(f"/v1/ubi/signals/{flow[0]}/feedback", headers=auth(token),
                           json={"verdict": "false_positive" if i == 0 else "useful"})
        assert resp.status_code == 200
        verdicts.append(resp.json["suggested_config_versions"])
    # One false positive of three is over 5 %: proposed once, at the third verdict (fewer
    # verdicts say nothing about a share), and never again while it is open.
    assert verdicts[:2] == [[], []] and len(verdicts[2]) == 1
    admin = tokens("acme", "admin", sub="root")
    versions = client.get("/v1/ubi/config/acme/versions", headers=auth(admin)).json["versions"]
    suggestion = next(v for v in versions if v["version"] == verdicts[2][0])
    assert suggestion["kind"] == "suggestion" and suggestion["status"] == "open"
    assert suggestion["author"] == "ubi:feedback" and "1 of 3" in suggestion["reason"]
    assert {c["path"]: c["new"] for c in suggestion["diff"]} == {
        "anomaly_thresholds.flow": {"warn": 3.0, "critical": 4.0}}
    current = client.get("/v1/ubi/config/acme", headers=auth(admin)).json
    assert "flow" not in current["config"]["anomaly_thresholds"]  # never applied silently
    again = client.post(f"/v1/ubi/signals/{flow[0]}/feedback", headers=auth(readers[1]),
                        json={"verdict": "false_positive"})
    assert again.json["suggested_config_versions"] == []
    accepted = client.put("/v1/ubi/config/acme", headers=auth(admin),
                          json=suggestion["config"])
    assert accepted.status_code == 200
    versions = client.get("/v1/ubi/config/acme/versions", headers=auth(admin)).json["versions"]
    assert next(v for v in versions if v["version"] == suggestion["version"])[
        "status"] == "accepted"
    with session_factory()() as s:
        assert configs.load_config(s, "acme", cached=False).thresholds("flow") == (3.0, 4.0)
        s.execute(sa.delete(SignalFeedback))
        s.commit()
    assert client.put("/v1/ubi/config/acme", headers=auth(admin), json={}).status_code == 200


def test_no_signal_rests_on_a_volume_only_feature(client, tokens, acme) -> None:
    """The tenant keeps the default prohibit_volume_only_metrics: no stored signal has a
    volume-only trigger, and the signals read over HTTP are those same signals."""
    volume_only = {f.name for f in FEATURES if f.volume_only}
    with session_factory()() as s:
        rows: Sequence[tuple[str, list[str]]] = s.execute(sa.select(
            Signal.signal_id, Signal.triggers).where(Signal.tenant_id == "acme")).all()
    assert rows and volume_only
    triggered = {t.split(".")[0] for _, triggers in rows for t in triggers}
    assert triggered and not triggered & volume_only
    read = client.post("/v1/ubi/query/signals", headers=auth(tokens("acme", *ALL_READ)),
                       json={"tenant_id": "acme", "page_size": 500}).json["signals"]
    assert {s["signal_id"] for s in read} <= {sid for sid, _ in rows}
