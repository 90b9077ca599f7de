"""The README, Procfile, docker-compose.yml and settings stay consistent with each other."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ubi.settings import ENV_VARS, load_settings

ROOT = Path(__file__).resolve().parents[3]


def _procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_readme_quick_start_has_exactly_two_commands_demo_first() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert block is not None
    commands = [ln for ln in block.group(1).splitlines() if ln.strip()]
    assert commands == ["./dev demo", "./dev test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci


def test_readme_documents_every_setting() -> None:
    text = (ROOT / "README.md").read_text()
    for var in ENV_VARS:
        assert f"| `{var.name}` |" in text, var.name


def test_settings_module_reads_every_documented_variable_and_nothing_else() -> None:
    source = (ROOT / "ubi" / "settings.py").read_text()
    body = source.split("def load_settings", 1)[1]
    read = set(re.findall(r'"((?:UBI|CELERY|DATABASE|REDIS|PROMETHEUS|PORT)[A-Z0-9_]*)"', body))
    documented = {v.name for v in ENV_VARS}
    assert read == documented


def test_procfile_processes_run_in_compose_with_the_same_commands() -> None:
    procfile = _procfile()
    services = _compose()["services"]
    for name, command in procfile.items():
        if name == "release":
            assert services["migrate"]["command"][-1] == command.replace("&&", "&&")
            continue
        assert name in services, f"Procfile process {name} missing from compose"
        assert " ".join(services[name]["command"]) == command, name
    for infra in ("postgres", "rabbitmq", "redis", "flower", "celery-exporter"):
        assert infra in services


def test_worker_groups_cover_every_queue_and_are_all_started() -> None:
    import celeryconfig

    procfile = _procfile()
    started = {cmd.split()[2] for cmd in procfile.values() if cmd.startswith("ubi worker")}
    assert started == set(celeryconfig.WORKER_GROUPS)


def test_compose_environment_is_understood_by_settings() -> None:
    env = _compose()["x-ubi-env"]
    documented = {v.name for v in ENV_VARS}
    assert set(env) <= documented
    resolved = {k: re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", str(v)) for k, v in env.items()}
    settings = load_settings(resolved)
    assert settings.is_postgres and not settings.embedded
    assert settings.redis_url == "redis://redis:6379/0"


def test_docker_compose_file_is_valid() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./dev test installs Debian's package)")
    result = subprocess.run([binary, "config", "-q"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
