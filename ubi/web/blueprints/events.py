"""Event ingestion (SPEC §3, §6): ``POST /events`` and ``GET /batches/{batch_id}``."""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
import msgspec
from flask import Response, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi.analytics.envelope import BatchFormatError, Envelope
from ubi.models import session_scope
from ubi.services import batches
from ubi.web.auth import current_principal, requires
from ubi.web.blueprints.common import AUTH, UNSTORABLE_TEXT, settings
from ubi.web.errors import ApiError, DependencyUnavailable, ErrorSchema
from ubi.web.msgspec_schemas import openapi_components

log = logging.getLogger("ubi.web.events")
blp = Blueprint("events", __name__, description="Event ingestion")


class ItemResultSchema(ma.Schema):
    index = ma.fields.Integer(required=True)
    signal_id = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True, metadata={"enum": ["accepted", "duplicate",
                                                                "rejected"]})
    error_code = ma.fields.String(metadata={"enum": [
        "SCHEMA_VIOLATION", "VALIDATION_ERROR", "TENANT_ISOLATION_VIOLATION",
        "SIGNAL_TYPE_NOT_ALLOWED"]})
    error_message = ma.fields.String()


class SummarySchema(ma.Schema):
    total = ma.fields.Integer(required=True)
    accepted = ma.fields.Integer(required=True)
    duplicates = ma.fields.Integer(required=True)
    rejected = ma.fields.Integer(required=True)


class BatchAcceptedSchema(ma.Schema):
    batch_id = ma.fields.String(required=True)
    results = ma.fields.List(ma.fields.Nested(ItemResultSchema), required=True)
    summary = ma.fields.Nested(SummarySchema, required=True)


class BatchStatusSchema(ma.Schema):
    batch_id = ma.fields.String(required=True)
    tenant_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["queued", "processing", "done",
                                                                "failed"]})
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    attempts = ma.fields.Integer()
    error = ma.fields.String(allow_none=True)
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    dropped = ma.fields.Dict()


#: ``{"events": [...]}``: the batch shape of SPEC §3 (``split_batch`` reads it).
SIGNAL_BATCH = {
    "type": "object",
    "required": ["events"],
    "properties": {"events": {
        "type": "array", "minItems": 1,
        "items": {"$ref": "#/components/schemas/SignalEnvelope"},
        "description": "at most UBI_MAX_BATCH (default 5000) envelopes; more is a 413"}},
}

REQUEST_BODY = {
    "required": True,
    "description": "a batch, or a bare JSON array of envelopes (the ingestion platform's own "
                   "shape); each envelope is validated on its own",
    "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": "#/components/schemas/SignalBatch"},
        {"type": "array", "minItems": 1,
         "items": {"$ref": "#/components/schemas/SignalEnvelope"}},
    ]}}},
}


def register_schemas(spec: Any) -> None:
    # SignalEnvelope is the msgspec Struct the hot path validates with, not a copy of it.
    for name, schema in openapi_components({"SignalEnvelope": Envelope}).items():
        spec.components.schema(name, component=schema)
    spec.components.schema("SignalBatch", component=SIGNAL_BATCH)


def _is_json_request() -> bool:
    mimetype = request.mimetype or ""
    return mimetype == "application/json" or mimetype.endswith("+json")


@blp.route("/events")
class Events(MethodView):
    @blp.doc(security=AUTH, requestBody=REQUEST_BODY)
    @blp.response(202, BatchAcceptedSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="not JSON, not a batch, or empty")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(413, schema=ErrorSchema, description="more than UBI_MAX_BATCH events")
    @blp.alt_response(415, schema=ErrorSchema, description="content type is not JSON")
    @blp.alt_response(503, schema=ErrorSchema, description="broker or database down; retry")
    @requires("ubi:write:events")
    def post(self) -> Any:
        """Accept a batch of SignalEnvelopes: each item is accepted, a duplicate, or rejected
        with its index and error code; the good items of a bad batch are kept. One message per
        batch is published with confirms before the 202."""
        if not _is_json_request():
            raise ApiError(415, f"content type must be application/json, got "
                           f"{request.mimetype or 'none'}", code="unsupported_media_type")
        principal = current_principal()
        cfg = settings()
        body = request.get_data(cache=False)
        with session_scope(cfg) as session:
            try:
                accepted = batches.accept_batch(
                    session, body, caller_tenant=principal.tenant_id,
                    privileged=principal.privileged, max_batch=cfg.max_batch,
                    request_id=g.get("request_id"),
                    correlation_id=request.headers.get("X-Correlation-ID"),
                    submitted_by=principal.sub)
            except BatchFormatError as exc:
                raise ApiError(400, str(exc), code="bad_request") from exc
            except batches.BatchTooLarge as exc:
                raise ApiError(413, str(exc), code="payload_too_large") from exc
        try:
            batches.queue_batch(accepted, cfg)
        except batches.BrokerUnavailable as exc:
            raise DependencyUnavailable("broker", "the batch was not accepted") from exc
        # Encoded here (the schema above documents it): a marshmallow dump of a thousand
        # item results cost more than validating them.
        return Response(msgspec.json.encode(accepted.body()), status=202,
                        mimetype="application/json")


@blp.route("/batches/<string:batch_id>")
class BatchStatus(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, BatchStatusSchema)
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @requires("ubi:write:events")
    def get(self, batch_id: str) -> Any:
        """Status of a batch and its counts: inserted, duplicates, dropped by reason."""
        principal = current_principal()
        with session_scope(settings()) as session:
            # (An id that cannot be stored names no batch; the database would refuse it.)
            storable = not UNSTORABLE_TEXT.search(batch_id)
            tenant = None if principal.privileged else principal.tenant_id  # None: any
            batch = (batches.batch_status(session, batch_id, tenant)
                     if storable and (tenant or principal.privileged) else None)
            # Another tenant's batch is unknown (the lookup is the caller's tenant's): ids
            # must not leak across tenants.
            if batch is None:
                raise ApiError(404, f"no batch {batch_id}", code="not_found")
            return batches.describe_batch(batch)
