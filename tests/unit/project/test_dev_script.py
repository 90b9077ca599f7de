"""``./dev test`` starts the servers the suite needs (the one place CI uses too), and stops
with one line naming a server that is neither running nor installed.

The functions of ``dev`` run here with a PATH of stand-in commands: a client that says "not
running" or "running", a server binary that records how it was started, or no binary at all.
The real servers are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT / "dev"
#: What the functions use besides the servers' own commands.
TOOLS = ("ls", "sort", "tail", "seq", "sleep")
CLIENTS = ("pg_isready", "redis-cli", "rabbitmq-diagnostics")


def _bin(tmp_path: Path, running: dict[str, bool], servers: tuple[str, ...] = ()) -> Path:
    """A PATH directory: each client answers ``running[client]`` (or "running once its
    server was started"); each of ``servers`` records its arguments and counts as started."""
    sh = shutil.which("sh")
    assert sh is not None
    path = tmp_path / "bin"
    path.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (path / tool).symlink_to(found)
    for client in CLIENTS:
        body = "exit 0" if running[client] else f'[ -e "$STUBS/{client}.started" ]'
        (path / client).write_text(f"#!{sh}\n{body}\n")
    for server in servers:
        client = {"redis-server": "redis-cli", "rabbitmq-server": "rabbitmq-diagnostics",
                  "pg_ctlcluster": "pg_isready"}[server]
        (path / server).write_text(f'#!{sh}\necho "${{0##*/}} $*" >> "$STUBS/started.log"\n'
                                   f': > "$STUBS/{client}.started"\n')
    for stub in path.iterdir():
        if not stub.is_symlink():
            stub.chmod(0o755)
    return path


def _start_test_servers(tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": str(bin_dir), "STUBS": str(tmp_path), "HOME": os.environ.get("HOME", "")}
    return subprocess.run([bash, "-c", 'source "$1" && start_test_servers', "bash", str(DEV)],
                          env=env, capture_output=True, text=True, timeout=60)


def _started(tmp_path: Path) -> list[str]:
    log = tmp_path / "started.log"
    return log.read_text().splitlines() if log.exists() else []


def test_running_servers_are_left_alone(tmp_path: Path) -> None:
    bin_dir = _bin(tmp_path, dict.fromkeys(CLIENTS, True),
                   servers=("redis-server", "rabbitmq-server", "pg_ctlcluster"))
    result = _start_test_servers(tmp_path, bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert _started(tmp_path) == []


def test_a_stopped_installed_server_is_started(tmp_path: Path) -> None:
    running = {"pg_isready": True, "redis-cli": False, "rabbitmq-diagnostics": False}
    bin_dir = _bin(tmp_path, running, servers=("redis-server", "rabbitmq-server"))
    result = _start_test_servers(tmp_path, bin_dir)
    assert result.returncode == 0, result.stderr
    started = _started(tmp_path)
    assert [line.split()[0] for line in started] == ["redis-server", "rabbitmq-server"]
    assert "--daemonize yes" in started[0] and "--port 6379" in started[0]
    assert started[1] == "rabbitmq-server -detached"
    assert result.stderr.splitlines() == ["starting Redis...", "starting RabbitMQ..."]


@pytest.mark.parametrize(("name", "package", "running", "installed"), [
    ("PostgreSQL", "postgresql", {"pg_isready": False, "redis-cli": False,
                                  "rabbitmq-diagnostics": False},
     ("redis-server", "rabbitmq-server")),
    ("Redis", "redis-server", {"pg_isready": True, "redis-cli": False,
                               "rabbitmq-diagnostics": False},
     ("rabbitmq-server",)),
    ("RabbitMQ", "rabbitmq-server", {"pg_isready": True, "redis-cli": True,
                                     "rabbitmq-diagnostics": False}, ()),
])
def test_a_missing_server_stops_at_once_with_one_line_saying_how_to_get_it(
        tmp_path: Path, name: str, package: str, running: dict[str, bool],
        installed: tuple[str, ...]) -> None:
    result = _start_test_servers(tmp_path, _bin(tmp_path, running, servers=installed))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"{name} is not running and not installed" in lines[0]
    assert f"apt-get install {package} (Debian)" in lines[0]
    assert "docker compose up -d postgres rabbitmq redis" in lines[0]
    assert _started(tmp_path) == []  # stopped before starting anything else


def test_ci_leaves_starting_servers_to_the_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
    for starts in ("pg_ctlcluster", "redis-server", "rabbitmq-server", "docker-compose"):
        assert starts not in ci, starts
    dev = DEV.read_text()
    test_command = dev[dev.index("  test)"):]
    assert test_command.index("start_test_servers") < test_command.index("pytest")
    assert "install_docker_compose" in test_command
    assert "install_prometheus" in test_command.split("pytest")[0]
    assert "install_chromium" in test_command.split("pytest")[0]


def _install_prometheus(tmp_path: Path, promtool_there: bool) -> tuple[int, list[str]]:
    """``install_prometheus`` with stand-ins: apt-get "installs" promtool and prometheus,
    systemctl records."""
    sh, bash = shutil.which("sh"), shutil.which("bash")
    assert sh is not None and bash is not None
    path = tmp_path / "bin"
    path.mkdir()
    log = 'echo "${0##*/} $*" >> "$STUBS/calls.log"'
    (path / "apt-get").write_text(
        f'#!{sh}\n{log}\nfor b in promtool prometheus; do printf "#!{sh}\\n" > "$STUBS/bin/$b"; '
        'chmod +x "$STUBS/bin/$b"; done\n')
    (path / "systemctl").write_text(f"#!{sh}\n{log}\n")
    chmod = shutil.which("chmod")
    assert chmod is not None
    (path / "chmod").symlink_to(chmod)
    if promtool_there:  # the package's two binaries
        (path / "promtool").write_text(f"#!{sh}\n")
        (path / "prometheus").write_text(f"#!{sh}\n")
    for stub in ("apt-get", "systemctl", "promtool", "prometheus"):
        if (path / stub).exists():
            (path / stub).chmod(0o755)
    env = {"PATH": str(path), "STUBS": str(tmp_path)}
    result = subprocess.run([bash, "-c", 'source "$1" && install_prometheus', "bash", str(DEV)],
                            env=env, capture_output=True, text=True, timeout=60)
    log_file = tmp_path / "calls.log"
    return result.returncode, log_file.read_text().splitlines() if log_file.exists() else []


def test_install_prometheus_installs_the_binaries_and_stops_the_server_it_brought(
        tmp_path: Path) -> None:
    code, calls = _install_prometheus(tmp_path, promtool_there=False)
    assert code == 0
    assert calls[0].startswith("apt-get install") and calls[0].endswith("prometheus")
    assert "--no-install-recommends" in calls[0]
    assert calls[1:] == ["systemctl disable --now prometheus"]


def test_install_prometheus_leaves_an_installed_prometheus_alone(tmp_path: Path) -> None:
    assert _install_prometheus(tmp_path, promtool_there=True) == (0, [])
