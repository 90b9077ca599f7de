"""JSON errors for every status of SPEC §6: ``{"code", "message", "errors"?}``.

Views raise ``ApiError`` (or call ``abort``); werkzeug's HTTP errors, validation errors of
request schemas and dependency failures are all turned into the same shape. Bad input is
never a 500; a dependency that is down is a 503 naming it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import kombu.exceptions
import marshmallow as ma
import redis.exceptions
import sqlalchemy.exc
from apispec import APISpec, BasePlugin
from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("ubi.web")

#: HTTP status -> stable error code.
STATUS_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 411: "length_required",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "rate_limited", 500: "internal_error", 503: "dependency_unavailable",
}


class ErrorSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "stable error code"})
    message = ma.fields.String(required=True)
    errors = ma.fields.Raw(metadata={"description": "details: field path -> reason"})


class ApiError(Exception):
    """An HTTP error with a code, a readable message and optional per-field details."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 errors: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.errors = errors
        self.headers = headers or {}


class DependencyUnavailable(ApiError):
    """A server UBI depends on is down: 503 naming it; the caller may retry, after
    ``retry_after`` seconds when the dependency said how long (else 5)."""

    def __init__(self, dependency: str, detail: str = "", *, retry_after: float | None = None):
        msg = f"{dependency} is unavailable" + (f": {detail}" if detail else "") + \
            "; retry later (the request had no effect)"
        wait = 5 if retry_after is None else max(1, math.ceil(retry_after))
        super().__init__(503, msg, code="dependency_unavailable",
                         errors={"dependency": dependency}, headers={"Retry-After": str(wait)})
        self.dependency = dependency


def error_response(status: int, message: str, *, code: str | None = None, errors: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"code": code or STATUS_CODES.get(status, "error"),
                            "message": message}
    if errors is not None:
        body["errors"] = errors
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def handle_api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, code=exc.code, errors=exc.errors,
                          headers=exc.headers)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    if isinstance(errors, dict) and set(errors) <= {"json", "query", "view_args", "headers",
                                                    "form", "files", "path"}:
        # webargs nests errors by location; flatten one level with the location as prefix.
        flat: dict[str, Any] = {}
        for location, fields in errors.items():
            if isinstance(fields, dict):
                for name, reason in fields.items():
                    flat[f"{location}.{name}" if location != "json" else name] = reason
            else:
                flat[location] = fields
        errors = flat
    message = data.get("message") or exc.description or exc.name
    if status == 422 and errors and not data.get("message"):
        first = next(iter(errors.items())) if isinstance(errors, dict) else None
        message = f"invalid request: {first[0]}: {first[1]}" if first else "invalid request"
    if status >= 500:
        log.error("server error %s: %s", status, message)
    headers = data.get("headers") or {}
    if status == 405 and exc.get_response().headers.get("Allow"):
        headers["Allow"] = exc.get_response().headers["Allow"]
    return error_response(status, str(message), errors=errors, headers=headers)


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency an exception points at, if it is a connectivity failure."""
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError |
                  sqlalchemy.exc.TimeoutError):
        return "database"
    if isinstance(exc, kombu.exceptions.OperationalError):
        return "broker"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    return None


def handle_unexpected(exc: Exception) -> Response:
    dependency = dependency_of(exc)
    if dependency is not None:
        log.warning("dependency %s unavailable: %s", dependency, type(exc).__name__)
        return handle_api_error(DependencyUnavailable(dependency, type(exc).__name__))
    log.exception("unhandled error")
    return error_response(500, "internal error; it has been logged with this request's id")


#: Routes (below the API prefix) that answer without any dependency: liveness and metrics.
NO_DEPENDENCY_ROUTES = ("/health", "/metrics")


class ErrorResponseDocs(BasePlugin):
    """apispec plugin documenting the errors any route can give, which flask-smorest would
    otherwise document only where a view says so: 503 ``dependency_unavailable`` on every
    route that reads or writes a dependency (``handle_unexpected``), 413 on every route with
    a body (Flask's ``MAX_CONTENT_LENGTH``). A view's own description of them wins."""

    def __init__(self, api_prefix: str) -> None:
        self.no_dependency = frozenset(f"{api_prefix}{r}" for r in NO_DEPENDENCY_ROUTES)

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        content = {"application/json": {"schema": ErrorSchema}}
        spec.components.response("DEPENDENCY_UNAVAILABLE", {
            "description": "a server UBI depends on (database, broker, Redis, IAM) is down; the "
                           "body names it, the request had no effect: retry",
            "content": content,
            "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                        "schema": {"type": "integer", "minimum": 1}}},
        }, lazy=True)
        spec.components.response("PAYLOAD_TOO_LARGE", {
            "description": "the request body is larger than the API accepts",
            "content": content}, lazy=True)

    def operation_helper(self, path: str | None = None, operations: dict[Any, Any] | None = None,
                         **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            if path not in self.no_dependency:
                responses.setdefault("503", responses.pop(503, "DEPENDENCY_UNAVAILABLE"))
            if "requestBody" in operation:
                responses.setdefault("413", responses.pop(413, "PAYLOAD_TOO_LARGE"))
