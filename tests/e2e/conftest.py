"""What the end-to-end tests share: the newcomer's demo, run once and kept serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import ingest_worker  # noqa: F401 - shared fixture

#: What an environment configured for the servers has and a newcomer's does not.
SERVER_VARS = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL",
               "UBI_QUEUE_PREFIX", "UBI_PSEUDONYM_SECRET", "UBI_RECEIPT_SIGNING_KEY",
               "UBI_JWT_SECRET", "UBI_JWT_ISSUER", "UBI_JWT_AUDIENCE",
               "PROMETHEUS_MULTIPROC_DIR")
LINK_PREFIX = "The pages on this data: open "


@dataclass
class ServedDemo:
    card: dict[str, Any]  # the scorecard ``--json`` printed
    link: str  # the sign-in link ``--serve`` printed
    origin: str
    home: Path  # the working directory: data/ and report.html

    @property
    def database(self) -> Path:
        return self.home / "data" / "demo" / "demo.sqlite3"

    @property
    def report(self) -> Path:
        return self.home / "report.html"


@pytest.fixture(scope="session")
def served_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedDemo]:
    """``ubi demo --json --seed 7 --html report.html --serve`` on the embedded default in a
    clean environment (no servers configured), serving its pages until the session ends.

    The scorecard test and the browser test read the same run: one demo (about two minutes)
    instead of two."""
    from tests.conftest import CLOCK_FILE, SUITE_NOW
    from ubi import clock

    # (A session fixture runs before the per-test clock is set: the demo's organisation ends
    # the day before the suite's pinned Wednesday, whatever day it runs.)
    clock.set_shared_clock(CLOCK_FILE, SUITE_NOW, ticking=True)
    home = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env["UBI_DATA_DIR"] = str(home / "data")
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a pipe nobody reads stalls
    proc = subprocess.Popen(
        [sys.executable, "-m", "ubi.cli", "demo", "--json", "--seed", "7", "--html",
         str(home / "report.html"), "--serve", "--port", "0"],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=log, text=True)

    def failed(what: str, printed: list[str]) -> str:
        log.seek(0)
        return (f"ubi demo --serve printed no {what}:\n{''.join(printed)}\n"
                f"{log.read().decode(errors='replace')[-3000:]}")

    try:
        assert proc.stdout is not None
        printed: list[str] = []
        card: dict[str, Any] | None = None
        for line in proc.stdout:  # ends only if the demo exits (it should not)
            printed.append(line)
            if card is None and line.startswith("{"):
                card = json.loads(line)
            elif line.startswith(LINK_PREFIX):
                link = line[len(LINK_PREFIX):].strip()
                break
        else:
            pytest.fail(failed("sign-in link", printed))
        if card is None:
            pytest.fail(failed("scorecard", printed))
        parts = urlsplit(link)
        assert parts.path == "/ui/sign-in" and parts.hostname == "127.0.0.1"
        yield ServedDemo(card, link, f"{parts.scheme}://{parts.netloc}", home)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
