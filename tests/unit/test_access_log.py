"""gunicorn's access log names no query string: queries can carry an original actor id or a
token, which are never logged (SPEC §8)."""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger


def test_an_access_line_has_the_path_and_request_id_but_not_the_query() -> None:
    conf = importlib.import_module("ubi.web.gunicorn_conf")
    config = Config()
    config.set("access_log_format", conf.access_log_format)
    response = SimpleNamespace(status="200 OK", headers=[("X-Request-ID", "req-1")], sent=10,
                               response_length=10)
    request = SimpleNamespace(headers=[], method="GET", path="/v1/ubi/signals/recent",
                              query="actor_id=alice@example.com", version=(1, 1))
    environ = {"REMOTE_ADDR": "10.0.0.1", "REQUEST_METHOD": "GET",
               "PATH_INFO": "/v1/ubi/signals/recent", "SERVER_PROTOCOL": "HTTP/1.1",
               "QUERY_STRING": "actor_id=alice@example.com",
               "RAW_URI": "/v1/ubi/signals/recent?actor_id=alice@example.com"}
    atoms = Logger(config).atoms(response, request, environ, timedelta(milliseconds=12))
    line = config.access_log_format % atoms
    assert '"GET /v1/ubi/signals/recent HTTP/1.1" 200 10 12ms' in line
    assert line.endswith(" req-1") and "alice" not in line and "?" not in line
