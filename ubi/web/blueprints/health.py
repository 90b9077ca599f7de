"""Liveness, readiness and metrics (no authentication)."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from ubi import __version__
from ubi.integrations.dependencies import readiness
from ubi.models import session_scope
from ubi.observability.metrics import exposition
from ubi.services.backlog import read_backlog
from ubi.web.errors import ErrorSchema

log = logging.getLogger("ubi.web.health")
blp = Blueprint("health", __name__, description="Liveness, readiness and metrics")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    version = ma.fields.String(required=True)


class CheckSchema(ma.Schema):
    ok = ma.fields.Boolean(required=True)
    detail = ma.fields.String(required=True)
    degraded = ma.fields.Boolean(metadata={
        "description": "serving, but part of the work waits (e.g. ERIS's breaker is open)"})


class ReadySchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"enum": ["ready", "degraded"]})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(CheckSchema))


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ErrorSchema, description="a dependency is unreachable")
    def get(self) -> Any:
        """Readiness: PostgreSQL, the broker and Redis are reachable (503 names the one that
        is not); an outside service whose circuit breaker is open (ERIS) makes it
        ``degraded``, not unready."""
        checks = readiness(current_app.config["UBI_SETTINGS"])
        body: dict[str, dict[str, Any]] = {c.name: {"ok": c.ok, "detail": c.detail}
                                           for c in checks}
        for c in checks:
            if c.degraded:
                body[c.name]["degraded"] = True
        down = [c.name for c in checks if not c.ok]
        if down:
            from ubi.web.errors import error_response

            return error_response(
                503, f"not ready: {', '.join(down)} unreachable", code="dependency_unavailable",
                errors={"dependencies": down, "checks": body}, headers={"Retry-After": "5"})
        status = "degraded" if any(c.degraded for c in checks) else "ready"
        return {"status": status, "checks": body}


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.response(200, description="Prometheus text exposition")
    def get(self) -> Response:
        """Prometheus metrics of every web and worker process (SPEC §11), and the backlog
        read from the store: pending events per tenant, each outbox's depth and oldest age."""
        cfg = current_app.config["UBI_SETTINGS"]
        try:
            with session_scope(cfg) as session:
                backlog = read_backlog(session)
        except SQLAlchemyError as exc:  # the page still answers; those gauges have no samples
            log.warning("ubi_queue_size and ubi_outbox_* not exported: %s", exc)
            backlog = None
        body, content_type = exposition(backlog)
        return Response(body, mimetype=None, content_type=content_type)
