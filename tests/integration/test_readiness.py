"""``/ready`` checks PostgreSQL, RabbitMQ and Redis separately and names the one that is down."""

from __future__ import annotations

import socket
from typing import Any

import pytest


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_ready_when_all_dependencies_are_up(client, broker) -> None:
    resp = client.get("/v1/ubi/ready")
    assert resp.status_code == 200, resp.json
    assert {k: v["ok"] for k, v in resp.json["checks"].items()} == {
        "database": True, "broker": True, "redis": True}
    assert resp.json["checks"]["database"]["detail"] == "postgresql"


@pytest.mark.parametrize("dependency", ["database", "broker", "redis"])
def test_ready_names_the_dependency_that_is_down(settings, database, dependency: str) -> None:
    from ubi.web.app import create_app

    port = _closed_port()
    settings_down: dict[str, dict[str, Any]] = {
        "database": {"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"},
        "broker": {"broker_url": f"amqp://guest:guest@127.0.0.1:{port}//",
                   "broker_connect_timeout": 1.0},
        "redis": {"redis_url": f"redis://127.0.0.1:{port}/0"},
    }
    broken = settings_down[dependency]
    client = create_app(settings.replace(**broken)).test_client()
    resp = client.get("/v1/ubi/ready")
    assert resp.status_code == 503
    assert resp.json is not None
    assert resp.json["code"] == "dependency_unavailable"
    assert resp.json["errors"]["dependencies"] == [dependency]
    assert dependency in resp.json["message"]
    assert resp.headers["Retry-After"]
    assert client.get("/v1/ubi/health").status_code == 200  # liveness is unaffected
