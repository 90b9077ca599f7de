"""``ubi demo``: UBI on the embedded default (SQLite, in-process broker), shown over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import requests
from werkzeug.serving import make_server

from ubi.services import schema
from ubi.settings import get_settings


def run_smoke_demo(echo: Callable[[str], Any]) -> int:
    """Start the API on a free local port, call it like a client would, print what it says."""
    from ubi.web.app import create_app
    from ubi.web.auth import ROLES, mint_token

    settings = get_settings()
    echo(f"UBI on {'the embedded default' if settings.embedded else 'configured servers'}: "
         f"store {settings.database_url.split('://')[0]}, broker "
         f"{'in-process' if settings.embedded_broker else settings.broker_url.split('@')[-1]}")
    schema.upgrade(settings)
    echo(f"schema at revision {schema.current_revision(settings)}")
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/v1/ubi"
    try:
        health = requests.get(f"{base}/health", timeout=10)
        echo(f"GET /health -> {health.status_code} {health.json()}")
        ready = requests.get(f"{base}/ready", timeout=10)
        echo(f"GET /ready  -> {ready.status_code} {json.dumps(ready.json())}")
        spec = requests.get(f"{base}/openapi.json", timeout=10).json()
        echo(f"GET /openapi.json -> {len(spec.get('paths', {}))} documented paths")
        token = mint_token(sub="demo", tenant_id="demo-tenant", roles=ROLES, settings=settings)
        echo(f"development token for tenant demo-tenant: {token[:24]}... (`ubi token` mints one)")
        return 0 if health.ok and ready.ok else 1
    finally:
        server.shutdown()
        thread.join(timeout=5)
