"""JSON errors for every status of SPEC §6: ``{"code", "message", "errors"?}``.

Views raise ``ApiError`` (or call ``abort``); werkzeug's HTTP errors, validation errors of
request schemas and dependency failures are all turned into the same shape. Bad input is
never a 500; a dependency that is down is a 503 naming it.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.exceptions
import marshmallow as ma
import redis.exceptions
import sqlalchemy.exc
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
    """A server UBI depends on is down: 503 naming it; the caller may retry."""

    def __init__(self, dependency: str, detail: str = ""):
        msg = f"{dependency} is unavailable" + (f": {detail}" if detail else "") + \
            "; retry later (the request had no effect)"
        super().__init__(503, msg, code="dependency_unavailable",
                         errors={"dependency": dependency}, headers={"Retry-After": "5"})
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
