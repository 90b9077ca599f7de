"""One batch's spans form one trace, from its HTTP request to the signal it published, and its
log lines carry that trace's id and can be followed by one correlation id (issue 23).

On the embedded default (SQLite, the in-process broker running tasks eagerly), so that every
span of the path, the web request's and each task's, ends in one process and one in-memory
exporter. The script posts three weeks of an organisation's history first (each batch its own
trace), then this morning's events as the batch under test: they close yesterday, so that
batch's ingest is followed by features, detect (which finds the after-hours surge) and the
signal publish. The trace context crosses the task outbox (every follow-up) and the signal
outbox (the publish span's parent is read from the row's headers) on the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.conftest import SERVER_VARS

CORRELATION_ID = "corr-trace-test-1"

SCRIPT = textwrap.dedent("""
    import json
    import sys
    from datetime import datetime

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ubi.demo.runner import prepare_environment

    settings = prepare_environment()
    from ubi import clock
    from ubi.demo.runner import demo_token
    from ubi.observability import tracing
    from ubi.services import schema
    from tests.support.organisation import organisation_events

    schema.upgrade(settings)
    exporter = InMemorySpanExporter()
    assert tracing.configure(tracing.SERVICE_WEB, exporter=exporter)
    from ubi.web.app import create_app

    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {demo_token(settings, 'acme')}"}
    now = clock.utcnow()
    events = organisation_events("acme", end_day=now.date(), until=now, surge_actor="eng03")
    today = now.date().isoformat()
    history = [e for e in events if e["occurred_at"][:10] < today]
    this_morning = [e for e in events if e["occurred_at"][:10] >= today]
    for i in range(0, len(history), 1000):
        resp = client.post("/v1/ubi/events", json={"events": history[i:i + 1000]},
                           headers=headers)
        assert resp.status_code == 202, resp.get_data(as_text=True)
    exporter.clear()
    print("=== the batch under test", file=sys.stderr, flush=True)
    resp = client.post("/v1/ubi/events", json={"events": this_morning},
                       headers={**headers, "X-Correlation-ID": sys.argv[1]})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    batch_spans = exporter.get_finished_spans()
    # Reads naming an original actor id in the path and in the query.
    exporter.clear()
    for url in ("/v1/ubi/actors/eng03/profile", "/v1/ubi/signals/recent?actor_id=eng03"):
        assert client.get(url, headers=headers).status_code == 200, url
    read_spans = [{"name": s.name, "attributes": {k: str(v) for k, v in s.attributes.items()}}
                  for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    spans = [{
        "name": s.name, "trace_id": format(s.context.trace_id, "032x"),
        "span_id": format(s.context.span_id, "016x"),
        "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
        "service": s.resource.attributes.get("service.name"),
        "status": s.status.status_code.name,
        "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
        "events": [str(dict(e.attributes or {})) for e in s.events],
    } for s in batch_spans]
    print(json.dumps({"batch_id": resp.json["batch_id"], "spans": spans,
                      "read_spans": read_spans,
                      "raw": sorted({e["actor_id"] for e in events}
                                    | {str(v) for e in events
                                       for v in e.get("payload", {}).values()})}))
""")


def _run(tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env.update({"UBI_DATA_DIR": str(tmp_path / "data"), "UBI_LOG_FORMAT": "json",
                "UBI_LOG_LEVEL": "INFO"})
    for name in list(env):
        if name.startswith("OTEL_"):  # no collector: the in-memory exporter only
            del env[name]
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", SCRIPT, CORRELATION_ID], cwd=root,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    logs = []
    tail = result.stderr.split("=== the batch under test", 1)[1]
    for line in tail.splitlines():
        if line.startswith("{"):
            logs.append(json.loads(line))
    return out, logs


def test_one_batch_is_one_trace_from_request_to_published_signal(tmp_path: Path) -> None:
    out, logs = _run(tmp_path)
    spans = out["spans"]
    assert spans, "no span was exported"
    # One trace: every span of the batch's request shares its trace id.
    traces = Counter(s["trace_id"] for s in spans)
    assert len(traces) == 1, traces
    (trace_id,) = traces
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] not in by_id]
    assert [r["name"] for r in roots] == ["POST /v1/ubi/events"], [r["name"] for r in roots]
    names = Counter(s["name"] for s in spans)
    for expected in ("ubi.ingest.publish", "run/ubi.tasks.ingest.ingest_batch",
                     "run/ubi.tasks.features.compute_features",
                     "run/ubi.tasks.detect.detect_tenant",
                     "run/ubi.tasks.publish.drain_signal_outbox", "ubi.signal.publish"):
        assert names[expected] >= 1, (expected, sorted(names))
    # The database calls are in it too (SQLAlchemy's instrumentation).
    assert any(s["attributes"].get("db.system") == "sqlite" for s in spans)

    def ancestors(span: dict[str, Any]) -> list[str]:
        chain = []
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            chain.append(span["name"])
        return chain

    # The chain: request -> ingest publish -> ingest -> detect (the batch closed a day) ->
    # signal publish, whose parent came from the signal outbox row (a span of the detect run);
    # features ran for the batch's dirty actor-days under the ingest too.
    publishes = [s for s in spans if s["name"] == "ubi.signal.publish"]
    assert all(p["status"] != "ERROR" for p in publishes), publishes
    for publish in publishes:
        chain = ancestors(publish)
        assert chain[-3:] == ["run/ubi.tasks.ingest.ingest_batch", "ubi.ingest.publish",
                              "POST /v1/ubi/events"], chain
        assert "run/ubi.tasks.detect.detect_tenant" in chain, chain
    for features in (s for s in spans if s["name"] == "run/ubi.tasks.features.compute_features"):
        assert "run/ubi.tasks.ingest.ingest_batch" in ancestors(features)
    assert publishes[0]["attributes"]["ubi.tenant_id"] == "acme"
    # Nothing personal in any span: no raw actor id, no payload value, anywhere.
    raw = [r for r in out["raw"] if len(r) >= 4]
    assert "eng03" in raw
    for s in spans:
        text = json.dumps([s["name"], s["attributes"], s["events"]])
        leaked = [r for r in raw if r in text]
        assert not leaked, (s["name"], leaked)
        assert "events_json" not in text and "db.statement.parameters" not in text

    # Nor in the spans of reads that name an actor in their path or query: the route's
    # template stands for both.
    assert [s["name"] for s in out["read_spans"]] == [
        "GET /v1/ubi/actors/<path:actor_id>/profile", "GET /v1/ubi/signals/recent"]
    for s in out["read_spans"]:
        assert "eng03" not in json.dumps(s), s

    # The batch's log lines: the ones inside a span carry its trace id, and every one from
    # the request to the publish names the one correlation id.
    assert logs, "no log line of the batch"
    traced = [line for line in logs if "trace_id" in line]
    assert traced and {line["trace_id"] for line in traced} == {trace_id}
    assert all(line["span_id"] in by_id for line in traced)
    followed = [line for line in logs if line.get("correlation_id") == CORRELATION_ID]
    loggers = {line["logger"] for line in followed}
    assert {line.get("batch_id") for line in followed} >= {out["batch_id"]}
    assert len(followed) == len(traced), (loggers, [ln["message"] for ln in logs
                                                   if ln not in followed][:5])
    for line in logs:
        leaked = [r for r in raw if r in json.dumps(line)]
        assert not leaked, (line["message"], leaked)
