"""The monitoring files in ops/ hold together: Prometheus's scrape config and alert rules pass
``promtool`` (its checks and the rules' unit tests), every dashboard query is valid PromQL, the
dashboard reads the provisioned data source, and compose serves what the files expect.

Grafana itself is not installable here, so the dashboard is checked as data: its structure,
and each panel query through ``promtool check rules`` (as a recording rule), which parses the
PromQL. ``./dev test`` installs Debian's ``prometheus`` package for promtool.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import celeryconfig
from ubi.web.app import API_PREFIX

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "ops" / "prometheus"
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ubi.json"
DLQS = ("ubi.tasks.dlq", "ubi.signals.dlq")
#: SPEC §11's families, the outbox gauges and the breaker gauge: what on-call must see.
UBI_FAMILIES = (
    "ubi_events_processed_total", "ubi_signals_generated_total", "ubi_anomalies_total",
    "ubi_receipt_emission_total", "ubi_feature_computation_duration_seconds",
    "ubi_baseline_recompute_duration_seconds", "ubi_api_request_duration_seconds",
    "ubi_queue_size", "ubi_outbox_depth", "ubi_outbox_oldest_age_seconds",
    "ubi_circuit_breaker_state",
)
#: Grafana's variables are no PromQL: each is replaced by a value of its kind before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$tenant": ".*"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (./dev test installs Debian's prometheus package)")
    return binary


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _query_panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _provisioned_datasource() -> dict[str, Any]:
    sources = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert len(sources) == 1
    source: dict[str, Any] = sources[0]
    return source


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _yaml(PROMETHEUS / "alerts.yml")["groups"]
            for rule in group["rules"] if "alert" in rule]


def _compose_services() -> dict[str, Any]:
    services: dict[str, Any] = _yaml(ROOT / "docker-compose.yml")["services"]
    return services


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# --- the dashboard ----------------------------------------------------------------------------

def test_dashboard_panels_have_unique_ids_positions_and_queries() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["title"], panel["id"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["id"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["id"]
    for panel in _query_panels():
        targets = panel["targets"]
        assert targets, panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_reads_the_provisioned_data_source() -> None:
    source = _provisioned_datasource()
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"  # the compose service
    expected = {"type": "prometheus", "uid": source["uid"]}
    for panel in _query_panels():
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == expected, variable["name"]


def test_dashboard_shows_every_ubi_family_and_the_celery_queues() -> None:
    queries = " ".join(t["expr"] for p in _query_panels() for t in p["targets"])
    for family in (*UBI_FAMILIES, "celery_queue_length", "celery_active_consumer_count"):
        assert family in queries, family


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = []
    for panel in _query_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr.replace("$1", ""), f"unknown variable in {target['expr']!r}"
            rules.append({"record": f"panel_{panel['id']}_{target['refId']}", "expr": expr})
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# --- Prometheus -------------------------------------------------------------------------------

def test_prometheus_config_and_its_rule_files_are_valid() -> None:
    result = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _yaml(PROMETHEUS / "prometheus.yml")["rule_files"] == ["alerts.yml"]


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = _run("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    tests = _run("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_every_alert_has_a_duration_a_severity_and_a_runbook_entry() -> None:
    anchors = _heading_anchors((ROOT / "docs" / "operations.md").read_text())
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names))
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"], name
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/operations.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no heading {anchor!r}"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [case for test in _yaml(PROMETHEUS / "alerts.test.yml")["tests"]
             for case in test.get("alert_rule_test", [])]
    for name in (rule["alert"] for rule in _alerts()):
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: needs a firing and a quiet case"


def test_alerts_cover_what_issue_23_asks_for() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _alerts()}
    for dlq in DLQS:
        assert any(f'queue_name="{dlq}"' in e for e in exprs.values()), dlq
    # every task queue maps to its worker group
    down = exprs["UbiWorkerGroupDown"]
    watched = re.search(r'celery_active_consumer_count\{queue_name=~"([^"]+)"\}', down)
    assert watched is not None
    assert set(watched.group(1).split("|")) == set(celeryconfig.QUEUE_NAMES)
    for group, queues in celeryconfig.WORKER_GROUPS.items():
        assert group in down, group
        for queue in queues:
            assert queue in down, queue
    assert "deriv(celery_queue_length" in exprs["UbiQueueBacklogGrowing"]
    assert "ubi_outbox_oldest_age_seconds" in exprs["UbiOutboxStale"]
    assert 'status="dead"' in exprs["UbiReceiptsDead"]
    assert "ubi_circuit_breaker_state) == 2" in exprs["UbiCircuitBreakerOpen"]
    assert "ubi_ingestion_gap_seconds" in exprs["UbiIngestionGap"]


# --- compose serves what the files expect -----------------------------------------------------

def test_scrape_targets_are_compose_services_on_their_ports() -> None:
    services = _compose_services()
    jobs = {job["job_name"]: job for job in _yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
    assert jobs["ubi-web"]["metrics_path"] == f"{API_PREFIX}/metrics"
    expected = {"ubi-web": "web", "flower": "flower", "celery-exporter": "celery-exporter"}
    for job, service in expected.items():
        (target,) = jobs[job]["static_configs"][0]["targets"]
        host, _, port = target.partition(":")
        assert host == service, job
        assert f"{port}:{port}" in services[service]["ports"], job
    # the alerts' scrape-target rule names exactly these jobs
    up_rule = next(r for r in _alerts() if r["alert"] == "UbiScrapeTargetDown")
    assert f'job=~"{"|".join(expected)}"' in up_rule["expr"]


def test_compose_runs_prometheus_and_grafana_with_the_ops_files() -> None:
    services = _compose_services()
    prometheus = services["prometheus"]
    assert "./ops/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "9090:9090" in prometheus["ports"]
    grafana = services["grafana"]
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    mounted = next(v.split(":")[1] for v in grafana["volumes"]
                   if v.startswith("./ops/grafana/dashboards:"))
    providers = _yaml(GRAFANA / "provisioning" / "dashboards" / "ubi.yml")["providers"]
    assert [p["options"]["path"] for p in providers] == [mounted]
    assert "3000:3000" in grafana["ports"]
    for volume in (*prometheus["volumes"], *grafana["volumes"]):
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).is_dir(), source


def test_celery_exporter_watches_every_task_queue_and_both_dlqs() -> None:
    command = _compose_services()["celery-exporter"]["command"]
    # one list: the exporter keeps only the last --queues it is given
    (queues,) = [arg.split("=", 1)[1] for arg in command if arg.startswith("--queues=")]
    assert set(queues.split(",")) == {*celeryconfig.QUEUE_NAMES, *DLQS}
