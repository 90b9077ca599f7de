"""The commands a newcomer tries first, on the embedded default (no servers configured), do
what their help says and say only what exists (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner

from tests.e2e.conftest import SERVER_VARS
from ubi.cli import main


def _embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env["UBI_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def test_broker_declare_on_the_embedded_default_says_there_is_nothing_to_declare(
        tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ubi.cli", "broker", "declare"],
                            cwd=tmp_path, env=_embedded_env(tmp_path), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and "embedded in-process broker needs no topology" in lines[0]


def test_devserver_web_prints_its_address_and_logs_each_request(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path, UBI_LOG_LEVEL="INFO", UBI_LOG_FORMAT="text")
    server = subprocess.Popen(
        [sys.executable, "-m", "ubi.cli", "devserver", "web", "--port", "0"], cwd=tmp_path,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("UBI API listening on http://127.0.0.1:"), first
        base = first.split()[4]  # http://127.0.0.1:PORT/v1/ubi
        assert base.endswith("/v1/ubi") and not base.endswith(":0/v1/ubi")
        assert requests.get(f"{base}/health", timeout=30).status_code == 200
        assert requests.get(f"{base}/no-such-thing", timeout=30).status_code == 404
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    requests_logged = [ln for ln in log.splitlines() if "ubi.devserver" in ln]
    assert len(requests_logged) == 2, log
    assert requests_logged[0].endswith("GET /v1/ubi/health 200")
    assert requests_logged[1].endswith("GET /v1/ubi/no-such-thing 404")


def test_help_texts_promise_nothing_that_is_not_there() -> None:
    runner = CliRunner()
    keys = runner.invoke(main, ["keys", "generate"])
    assert keys.exit_code == 0, keys.output
    assert "BEGIN PUBLIC KEY" in keys.output
    devserver = runner.invoke(main, ["devserver", "--help"])
    assert devserver.exit_code == 0
    listed = devserver.output.split("Commands:", 1)[1].splitlines()
    # the stand-ins of the outside services (issue 20)
    assert [ln.split()[0] for ln in listed if ln.strip()] == ["eris", "governance", "iam", "web"]


def test_token_url_prints_a_sign_in_link_that_signs_in(tmp_path: Path) -> None:
    from urllib.parse import parse_qs, urlsplit

    from ubi.settings import get_settings
    from ubi.web.auth import verifier

    result = CliRunner().invoke(main, ["token", "--tenant", "acme", "--url", "--role",
                                       "ubi:read:team", "--base-url", "http://ui.test:9000/"])
    assert result.exit_code == 0, result.output
    link = urlsplit(result.output.strip())
    assert (link.scheme, link.netloc, link.path) == ("http", "ui.test:9000", "/ui/sign-in")
    principal = verifier(get_settings()).verify(parse_qs(link.query)["token"][0])
    assert (principal.tenant_id, principal.roles) == ("acme", frozenset({"ubi:read:team"}))
