"""Flask application factory: the thin HTTP API of SPEC §6 under ``/v1/ubi``, and the pages
for people under ``/ui`` (``ubi/web/pages.py``)."""

from __future__ import annotations

import importlib.resources
import re
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request, send_from_directory
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from ubi.analytics import json_limits
from ubi.observability import context, tracing
from ubi.observability.logging import configure_logging
from ubi.observability.metrics import API_DURATION
from ubi.settings import Settings, get_settings
from ubi.web import errors, rate_limits

API_PREFIX = "/v1/ubi"
#: Where the Swagger UI page of ``/v1/ubi/docs`` loads its scripts and styles from.
SWAGGER_UI_ASSETS = f"{API_PREFIX}/docs/assets"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class UbiApi(Api):
    """flask-smorest ``Api`` whose errors use UBI's JSON error shape."""

    ERROR_SCHEMA = errors.ErrorSchema
    #: No catch-all ``default`` response on every operation: each status an operation can
    #: answer is documented for it (``alt_response``), so that a client, and the conformance
    #: test of ``tests/integration/test_api_conformance.py``, can tell an undocumented one.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Response:
        return errors.handle_http_exception(error)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app for ``settings`` (default: the process environment)."""
    settings = settings or get_settings()
    configure_logging()
    tracing.configure(tracing.SERVICE_WEB)
    app = Flask("ubi")
    # First, so that the request's span is current in every hook after it (their logs carry
    # its trace id).
    tracing.instrument_app(app)
    app.config.update(
        UBI_SETTINGS=settings,
        API_TITLE="UBI — User Behaviour Intelligence",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI's files come from a package and are served here (``_serve_swagger_ui``):
        # the docs work offline and behind a strict proxy, and name no other host.
        OPENAPI_SWAGGER_UI_URL=f"{SWAGGER_UI_ASSETS}/",
        # No badge from Swagger UI's online validator (it would send the spec's URL out).
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        # Far above the largest valid batch; a bigger body is refused before it is read.
        MAX_CONTENT_LENGTH=settings.max_batch * 16 * 1024 + (1 << 20),
        JSON_SORT_KEYS=False,
    )
    description = ("Explainable engineering-health intelligence. All endpoints but health, "
                   "readiness, metrics and the receipt key need a Bearer JWT.")
    if settings.rate_limit_enabled:
        description += (" Requests are rate limited per token and per tenant (429 with "
                        "Retry-After), except health, readiness and metrics.")
    api = UbiApi(app, spec_kwargs={
        "info": {"description": description},
        "extra_plugins": [rate_limits.RateLimitDocs(settings.rate_limit_enabled, API_PREFIX),
                          errors.ErrorResponseDocs(API_PREFIX)],
    })
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})

    from ubi.web.blueprints import register_blueprints

    register_blueprints(api)
    _serve_swagger_ui(app)
    from ubi.web.pages import bp as pages

    # A plain Flask blueprint: the pages for people are no part of the OpenAPI document.
    app.register_blueprint(pages)

    app.register_error_handler(errors.ApiError, errors.handle_api_error)
    app.register_error_handler(Exception, errors.handle_unexpected)
    app.before_request(_start_request)
    app.before_request(_bound_json_body)
    rate_limits.install(app, settings)  # after _start_request: its logs carry the request id
    app.after_request(_finish_request)
    app.teardown_request(_teardown_request)
    return app


def _serve_swagger_ui(app: Flask) -> None:
    """Serve Swagger UI's distribution (the ``flask-swagger-ui`` package ships it) under
    ``SWAGGER_UI_ASSETS``; only its files, none of that package's own views."""
    dist = Path(str(importlib.resources.files("flask_swagger_ui") / "dist"))

    def swagger_ui_asset(filename: str) -> Response:
        return send_from_directory(dist, filename)

    app.add_url_rule(f"{SWAGGER_UI_ASSETS}/<path:filename>", view_func=swagger_ui_asset)


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()
    context.clear()
    context.bind(request_id=g.request_id,
                 correlation_id=request.headers.get("X-Correlation-ID") or None)


def _bound_json_body() -> None:
    """Refuse a JSON body too large or nested too deeply before anything decodes it (event
    batches are bounded per envelope by ingestion, which keeps a batch's good items)."""
    if request.method not in ("POST", "PUT", "PATCH") or request.path == f"{API_PREFIX}/events":
        return
    mimetype = request.mimetype or ""
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        return
    if (request.content_length or 0) > json_limits.MAX_BODY_BYTES:
        raise errors.ApiError(413, f"a JSON body is at most {json_limits.MAX_BODY_BYTES} bytes",
                              code="payload_too_large")
    body = request.get_data(cache=True)
    if len(body) > json_limits.MAX_BODY_BYTES:
        raise errors.ApiError(413, f"a JSON body is at most {json_limits.MAX_BODY_BYTES} bytes",
                              code="payload_too_large")
    if json_limits.too_deep(body):
        raise errors.ApiError(400, f"JSON nests at most {json_limits.MAX_DEPTH} levels deep",
                              code="bad_request")


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    started = g.get("request_started")
    if started is not None and request.url_rule is not None:
        principal: Any = g.get("ubi_principal")
        tenant = getattr(principal, "tenant_id", None) or "none"
        API_DURATION.labels(tenant_id=tenant, endpoint=request.url_rule.rule,
                            method=request.method).observe(time.perf_counter() - started)
    return response


def _teardown_request(_exc: BaseException | None) -> None:
    context.clear()
