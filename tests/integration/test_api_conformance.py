"""The API does what its OpenAPI document says (issue 17): schemathesis generates requests for
every operation of ``/v1/ubi/openapi.json`` and sends them to the app served by a real WSGI
server, with a real token holding every ``ubi:*`` role of a tenant that has data. No answer may
be a 5xx, every status must be documented for its operation, and every body must match the
schema documented for its status. The test fails with each distinct problem and a curl command
that reproduces it; with ``-s`` it prints the statuses each operation answered.

It drives schemathesis's engine, as ``schemathesis run`` does (examples, coverage and fuzzing
phases), rather than its pytest integration: ``schemathesis.pytest.from_fixture`` (needed for a
server started by a fixture) relies on a pytest internal that pytest 9.2 removed.

The run is bounded and derandomized (fixed seed, no example database): at most
``MAX_EXAMPLES`` generated cases per operation besides the explicit examples and coverage
cases; ``UBI_FUZZ_MAX_EXAMPLES`` and ``UBI_FUZZ_SEED`` widen or vary it by hand. The same
seed makes the same choices; the ids a run creates (pseudonyms, signal and batch ids) differ
from run to run. Path, query and body parameters naming the tenant, its actors, teams and
signals take known values most of the time, so the cases reach past the 403s and 404s.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from schemathesis import engine
from schemathesis.core.result import Ok
from schemathesis.engine import events as engine_events

from tests.conftest import BROKER_URL, CLOCK_FILE, SUITE_NOW
from tests.support import resources
from tests.support.organisation import organisation_events
from tests.support.pipeline import run_pipeline
from tests.support.servers import web_thread
from ubi import clock
from ubi.models import Signal, session_factory
from ubi.services import deletions
from ubi.web.auth import ROLES, mint_token

TENANT = "fuzzco"
ACTORS = [f"eng{i:02d}" for i in range(12)]
MAX_EXAMPLES = int(os.environ.get("UBI_FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("UBI_FUZZ_SEED", "17"))
CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")


@pytest.fixture(scope="module")
def fuzz_tenant(database, broker, settings) -> Iterator[dict[str, Any]]:
    """Twelve people in two teams over three weeks, one of them burning out: features,
    baselines and signals computed by the services the workers run."""
    clock.set_shared_clock(CLOCK_FILE, SUITE_NOW, ticking=False)
    events = organisation_events(TENANT, end_day=SUITE_NOW.date(), until=SUITE_NOW,
                                 actors=len(ACTORS), surge_actor="eng03")
    run_pipeline(settings, TENANT, events)
    with session_factory()() as s:
        signal_ids = s.execute(sa.select(Signal.signal_id).where(
            Signal.tenant_id == TENANT).order_by(Signal.signal_id)).scalars().all()
    assert signal_ids, "the tenant needs signals for the signal routes to answer 200"
    with session_factory()() as s:  # a deletion job to read (of no one's data: never run)
        job_id = deletions.request_deletion(
            s, tenant_id=TENANT, actor_id="0" * 64, time_from=None, time_to=None,
            requested_by="schemathesis", reason="conformance")
        s.commit()
    yield {"signal_ids": list(signal_ids), "job_ids": [job_id]}
    resources.truncate_all(database)
    resources.purge_task_queues(BROKER_URL)


@pytest.fixture(scope="module")
def api_base(fuzz_tenant, settings) -> Iterator[str]:
    from ubi.web.app import create_app

    # Without rate limits: the run's every request counts, and one 429 on the only case that
    # could succeed (an anchor to undo) made the run flaky on a fast machine. The limiter's
    # own answers are tested in test_rate_limits.py.
    with web_thread(create_app(settings.replace(rate_limit_enabled=False))) as base:
        yield base


def schemathesis_config(token: str, signal_ids: list[str],
                        job_ids: list[str]) -> schemathesis.Config:
    known = 0.8  # how often a parameter below takes a known value rather than a generated one
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "continue-on-failure": True,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {"stateful": {"enabled": False}},
        "dictionaries": {
            "tenants": {"values": [TENANT]},
            "actors": {"values": ACTORS},
            "teams": {"values": ["alpha", "beta"]},
            "signals": {"values": signal_ids},
            "jobs": {"values": job_ids},
        },
        "parameters": {
            "path.tenant_id": {"dictionary": "tenants", "probability": known},
            "query.tenant_id": {"dictionary": "tenants", "probability": known},
            "body.tenant_id": {"dictionary": "tenants", "probability": known},
            "path.actor_id": {"dictionary": "actors", "probability": known},
            "query.actor_id": {"dictionary": "actors", "probability": known},
            "path.team_id": {"dictionary": "teams", "probability": known},
            "path.signal_id": {"dictionary": "signals", "probability": known},
            "path.job_id": {"dictionary": "jobs", "probability": known},
        },
    })


@dataclass
class Findings:
    """What an engine run found: one entry per distinct failure (with a curl command that
    reproduces it), and the statuses each operation answered."""

    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def read(self, stream: Any) -> Findings:
        for event in stream:
            if isinstance(event, engine_events.FatalError):
                raise event.exception
            if isinstance(event, engine_events.NonFatalError):
                self.failures[(event.label, "error", str(event.value))] = (
                    f"{event.label}: {event.value!r}")
            if isinstance(event, engine_events.ScenarioFinished) and event.label:
                self._scenario(event.label, event.recorder)
        return self

    def _scenario(self, label: str, recorder: Any) -> None:
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                self.statuses[label][interaction.response.status_code] += 1
        for checks in recorder.checks.values():
            for check in checks:
                info = check.failure_info
                if info is not None:
                    key = (label, check.name, info.failure.title)
                    self.failures.setdefault(key, f"{label}: {check.name}: {info.failure.title}"
                                                  f"\n{info.failure.message}\n{info.code_sample}")


@pytest.mark.slow
def test_every_operation_answers_as_documented(api_base, fuzz_tenant, settings) -> None:
    token = mint_token(sub="schemathesis", tenant_id=TENANT, roles=ROLES, settings=settings)
    schema = schemathesis.openapi.from_url(
        f"{api_base}/openapi.json", config=schemathesis_config(token, fuzz_tenant["signal_ids"],
                                   fuzz_tenant["job_ids"]))
    operations: set[str] = set()
    for op in schema.get_all_operations():
        assert isinstance(op, Ok), op.err()
        operations.add(f"{op.ok().method.upper()} {op.ok().path}")
    found = Findings().read(engine.from_schema(schema).execute())
    for label, statuses in sorted(found.statuses.items()):
        print(f"{label}: {dict(sorted(statuses.items()))}")
    assert not found.failures, f"{len(found.failures)} problems:\n\n" + "\n\n".join(
        found.failures.values())
    assert set(found.statuses) == operations
    # The known values reach past the 404s: every operation answered a success at least once.
    assert [op for op in operations if not any(200 <= c < 300 for c in found.statuses[op])] == []
