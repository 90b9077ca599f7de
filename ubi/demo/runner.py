"""``ubi demo``: a realistic organisation's events through the whole running system.

The demo is a client of UBI like any other: it starts the API on a local port, posts the
events over HTTP in batches of 1,000 with a token, lets the pipeline (ingest → features →
detect) turn them into signals, closes the last day, then reads the stored signals and scores
them against the planted truth. On the embedded default (no servers configured) every task
runs in-process on a fresh SQLite file of its own; with ``DATABASE_URL`` and a broker
configured the same happens on the real servers, and the running workers do the processing.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from ubi.settings import Settings, get_settings, set_process_env

BATCH = 1000
Echo = Callable[[str], Any]


def prepare_environment() -> Settings:
    """On the embedded default, give the demo a fresh SQLite file of its own (the user's
    ``.ubi/ubi.sqlite3`` is never touched). Must run before the Celery app is imported."""
    settings = get_settings()
    overrides: dict[str, str] = {}
    if not settings.log_level_set:
        # The demo talks to a person: its own report, not every task's log line.
        overrides["UBI_LOG_LEVEL"] = "WARNING"
    if settings.embedded_db:
        demo_dir = settings.data_dir / "demo"
        demo_dir.mkdir(parents=True, exist_ok=True)
        for old in demo_dir.glob("demo.sqlite3*"):
            old.unlink()
        overrides["DATABASE_URL"] = f"sqlite:///{demo_dir / 'demo.sqlite3'}"
    if not overrides:
        return settings
    for name, value in overrides.items():
        set_process_env(name, value)
    get_settings.cache_clear()
    return get_settings()


@dataclass
class IngestSummary:
    events: int = 0
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)


@contextmanager
def local_api(settings: Settings) -> Iterator[str]:
    """The API on a free local port for the duration of the block; yields its base URL."""
    from werkzeug.serving import make_server

    from ubi.web.app import create_app

    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/ubi"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def serve_pages(settings: Settings, tenant_id: str, *, port: int, echo: Echo,
                host: str = "127.0.0.1") -> None:
    """``ubi demo --serve``: the web server on the demo's data until Ctrl+C, with a sign-in
    link to the tenant's pages for a reader of every scope."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from ubi.web.app import create_app
    from ubi.web.auth import mint_token
    from ubi.web.pages import sign_in_link

    class Quiet(WSGIRequestHandler):
        """No line per request: the person reads the link, not the server's log."""

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            pass

    server = make_server(host, port, create_app(settings), threaded=True,
                         request_handler=Quiet)
    token = mint_token(sub="demo-lead", tenant_id=tenant_id,
                       roles=("ubi:read:actor", "ubi:read:team", "ubi:read:tenant"),
                       settings=settings, ttl=timedelta(hours=8))
    link = sign_in_link(f"http://{host}:{server.server_port}", token)
    echo(f"\nThe pages on this data: open {link}")
    echo("(a sign-in link valid for 8 hours; Ctrl+C stops the server)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def post_batches(base: str, token: str, lines: list[bytes], *, progress: bool = True,
                 desc: str = "ingesting") -> IngestSummary:
    """POST the envelopes (raw JSON lines) in batches of 1,000; retry a 503 like a client."""
    from tqdm import tqdm

    summary = IngestSummary(events=len(lines))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    with requests.Session() as http, tqdm(total=len(lines), unit="ev", desc=desc,
                                          disable=not progress, leave=False) as bar:
        for start in range(0, len(lines), BATCH):
            body = b'{"events":[' + b",".join(lines[start:start + BATCH]) + b"]}"
            for attempt in range(5):
                resp = http.post(f"{base}/events", data=body, headers=headers, timeout=600)
                if resp.status_code != 503:
                    break
                time.sleep(1 + attempt)
            if resp.status_code != 202:
                summary.errors.append(f"batch at {start}: {resp.status_code} {resp.text[:200]}")
                continue
            data = resp.json()
            summary.batches += 1
            summary.batch_ids.append(data["batch_id"])
            for key in ("accepted", "duplicates", "rejected"):
                setattr(summary, key, getattr(summary, key) + data["summary"][key])
            bar.update(min(BATCH, len(lines) - start))
    summary.seconds = time.perf_counter() - started
    return summary


def wait_for_processing(settings: Settings, tenant_id: str, batch_ids: list[str],
                        through: date, *, timeout: float = 1800.0, progress: bool = True
                        ) -> None:
    """Close the days up to ``through`` and wait until the tenant is evaluated through it."""
    from tqdm import tqdm

    from ubi.models import Batch, IngestionState, session_scope
    from ubi.tasks.detect import detect_tenant

    deadline = time.monotonic() + timeout
    with tqdm(total=len(batch_ids), desc="processing", disable=not progress,
              leave=False) as bar:
        done = 0
        while done < len(batch_ids):
            with session_scope(settings) as s:
                done = s.execute(sa.select(sa.func.count()).select_from(Batch).where(
                    Batch.batch_id.in_(batch_ids), Batch.status.in_(("done", "failed")))
                ).scalar_one()
            bar.update(done - bar.n)
            if done < len(batch_ids):
                if time.monotonic() > deadline:
                    raise TimeoutError("batches still queued: are the workers running?")
                time.sleep(0.5)
    # The day close of beat, for the last day (on the embedded default it runs right here).
    detect_tenant.apply_async(kwargs={"tenant_id": tenant_id, "through": through.isoformat()})
    while True:
        with session_scope(settings) as s:
            state = s.get(IngestionState, tenant_id)
            if state is not None and state.last_evaluated_day is not None \
                    and state.last_evaluated_day >= through:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("detection did not reach the last day: is a detect worker "
                               "running?")
        time.sleep(0.5)


def stored_signals(settings: Settings, tenant_id: str) -> list[dict[str, Any]]:
    """Every version of every signal of the tenant, as scorecard records."""
    from ubi.models import Signal, SignalVersion, session_scope

    with session_scope(settings) as s:
        rows = s.execute(sa.select(
            Signal.signal_id, Signal.actor_scope, Signal.subject_id, Signal.signal_class,
            Signal.first_day, Signal.status, Signal.reason, Signal.severity, Signal.team_id,
            Signal.dimension, Signal.signal_type).where(Signal.tenant_id == tenant_id)).all()
        # snapshot is dict[str, Any]; SQLAlchemy infers Row[*tuple[Any, ...]] for a JSON column
        versions: Sequence[sa.Row[str, dict[str, Any]]] = s.execute(sa.select(
            SignalVersion.signal_id, SignalVersion.snapshot).where(
            SignalVersion.tenant_id == tenant_id)).all()
    by_id = {r.signal_id: r for r in rows}
    records: list[dict[str, Any]] = []
    for signal_id, snap in versions:
        row = by_id.get(signal_id)
        if row is None:
            continue
        records.append({"signal_id": signal_id, "actor_scope": row.actor_scope,
                        "subject_id": row.subject_id, "signal_class": row.signal_class,
                        "severity": snap.get("severity", row.severity),
                        "first_day": row.first_day, "status": row.status,
                        "reason": row.reason, "team_id": row.team_id,
                        "dimension": row.dimension, "signal_type": row.signal_type})
    return records


def read_jsonl(path: str | Path) -> list[bytes]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        return [line.strip() for line in fh if line.strip()]


def demo_token(settings: Settings, tenant_id: str) -> str:
    from ubi.web.auth import ROLES, mint_token

    return mint_token(sub="ubi-demo", tenant_id=tenant_id, roles=ROLES, settings=settings,
                      ttl=timedelta(hours=6))


@dataclass
class DemoResult:
    tenant_id: str
    ingest: IngestSummary
    signals: list[dict[str, Any]]
    actor_of: dict[str, str]
    first_day: date
    last_day: date
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_pipeline(settings: Settings, tenant_id: str, lines: list[bytes], actors: set[str],
                 first_day: date, last_day: date, *, progress: bool) -> DemoResult:
    """Post the events to the running API, wait for the pipeline, read the signals back."""
    from ubi.analytics.privacy import Pseudonymiser
    from ubi.services import schema

    started = time.perf_counter()
    schema.upgrade(settings)
    token = demo_token(settings, tenant_id)
    with local_api(settings) as base:
        ingest = post_batches(base, token, lines, progress=progress)
    wait_for_processing(settings, tenant_id, ingest.batch_ids, last_day, progress=progress)
    check = recompute_and_check(settings, tenant_id)
    alias = Pseudonymiser(settings.pseudonym_secret)
    actor_of = {alias.pseudonym(tenant_id, a): a for a in actors}
    return DemoResult(tenant_id, ingest, stored_signals(settings, tenant_id), actor_of,
                      first_day, last_day, time.perf_counter() - started,
                      extra={"features_check": check.as_dict(),
                             "features_check_summary": check.summary()})


def recompute_and_check(settings: Settings, tenant_id: str) -> Any:
    """The nightly full recompute (the replayed history arrived after ``late_event_days``,
    so its days wait for it, SPEC §3), then the check that stored features equal what the
    analytics library computes from the stored events."""
    from ubi.models import session_scope
    from ubi.services.feature_check import check_features
    from ubi.services.features import recompute_features

    with session_scope(settings) as s:
        recompute_features(s, tenant_id)
    with session_scope(settings) as s:
        return check_features(s, tenant_id)


def unique_tenant(prefix: str, settings: Settings) -> str:
    """The demo's tenant: fixed on its own fresh database, unique on shared servers."""
    return prefix if settings.embedded_db else f"{prefix}-{uuid.uuid4().hex[:8]}"


def envelopes_to_lines(envelopes: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e, separators=(",", ":")).encode() for e in envelopes]


def span_of(lines: list[bytes]) -> tuple[set[str], date, date, str]:
    """Actors, first and last UTC day, and the tenant of a list of envelope lines."""
    actors: set[str] = set()
    first = last = None
    tenant = ""
    for line in lines:
        env = json.loads(line)
        tenant = tenant or env.get("tenant_id", "")
        if env.get("actor_id"):
            actors.add(env["actor_id"])
        day = datetime.fromisoformat(env["occurred_at"]).astimezone(UTC).date()
        first = day if first is None or day < first else first
        last = day if last is None or day > last else last
    if first is None or last is None:
        raise ValueError("no events")
    return actors, first, last, tenant
