"""Tenant configuration (SPEC §6, §10)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi import clock
from ubi.analytics.envelope import unstorable_text_at
from ubi.models import session_scope
from ubi.services import configs
from ubi.web.auth import current_principal, requires
from ubi.web.blueprints.common import (
    AUTH,
    TENANT_ID,
    UNSTORABLE_REASON,
    reading_tenant,
    settings,
)
from ubi.web.errors import ApiError, ErrorSchema

blp = Blueprint("config", __name__, description="Per-tenant configuration, versioned")


class ConfigSchema(ma.Schema):
    version = ma.fields.Integer(required=True)
    config = ma.fields.Dict(required=True)
    snapshot_hash = ma.fields.String(required=True)


class ConfigWrittenSchema(ma.Schema):
    version = ma.fields.Integer(required=True)
    config = ma.fields.Dict(required=True)
    receipt_id = ma.fields.String(required=True, metadata={
        "description": "the config receipt waiting in the receipt outbox (SPEC §13)"})


class ConfigVersionSchema(ma.Schema):
    version = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"enum": ["applied", "rejected",
                                                               "suggestion"]})
    status = ma.fields.String(required=True)
    author = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    diff = ma.fields.List(ma.fields.Dict(), required=True, metadata={
        "description": "leaf changes: {path, old, new}"})
    reason = ma.fields.String(allow_none=True)
    snapshot_hash = ma.fields.String(required=True)
    receipt_id = ma.fields.String(allow_none=True)
    config = ma.fields.Dict(allow_none=True, metadata={
        "description": "suggestions only: the proposed config; PUT it to accept"})


class ConfigVersionsSchema(ma.Schema):
    tenant_id = ma.fields.String(required=True)
    versions = ma.fields.List(ma.fields.Nested(ConfigVersionSchema), required=True)


#: The request body of PUT: the config document (any subset of SPEC §10's keys; the rest keep
#: their defaults), validated by ``tenant_config.validate_config``.
CONFIG_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "SPEC §10 config keys"}}}}


@blp.route("/config/<string:tenant_id>")
class TenantConfigResource(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, ConfigSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @requires("ubi:read:tenant")
    def get(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's current config and its version (version 0: defaults)."""
        TENANT_ID.check("tenant_id", tenant_id)
        with session_scope(settings()) as session:
            tenant = reading_tenant(session, tenant_id, "config")
            return configs.describe(configs.load_config(session, tenant, cached=False))

    @blp.doc(security=AUTH, requestBody=CONFIG_BODY)
    @blp.response(200, ConfigWrittenSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id, a body "
                      "that is not JSON, or an invalid config (errors name each field; the "
                      "attempt is recorded and gets a receipt)")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(415, schema=ErrorSchema)
    @requires("ubi:write:config")
    def put(self, tenant_id: str) -> dict[str, Any]:
        """Validate and store a new version of the tenant's config, with author and diff,
        and a config receipt; it applies to new computations at once."""
        TENANT_ID.check("tenant_id", tenant_id)
        principal = current_principal()
        principal.require_tenant(tenant_id)
        if not request.is_json:
            raise ApiError(415, "content type must be application/json",
                           code="unsupported_media_type")
        document = request.get_json(silent=True)
        if document is None:
            raise ApiError(400, "the body is not JSON", code="bad_request")
        where = unstorable_text_at(document)
        if where is not None:
            raise ApiError(400, f"invalid config: {where}: {UNSTORABLE_REASON}",
                           code="bad_request", errors={where: UNSTORABLE_REASON})
        with session_scope(settings()) as session:
            change = configs.change_config(session, tenant_id, document, author=principal.sub,
                                           now=clock.utcnow())
        if not change.accepted:
            first, reason = next(iter(change.errors.items()))
            raise ApiError(400, f"invalid config: {first}: {reason}", code="bad_request",
                           errors=change.errors)
        return {"version": change.version, "config": change.config,
                "receipt_id": change.receipt_id}


@blp.route("/config/<string:tenant_id>/versions")
class TenantConfigVersions(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, ConfigVersionsSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @requires("ubi:read:tenant")
    def get(self, tenant_id: str) -> dict[str, Any]:
        """Every version of the tenant's config, newest first: who, when, what changed;
        rejected attempts too."""
        TENANT_ID.check("tenant_id", tenant_id)
        with session_scope(settings()) as session:
            tenant = reading_tenant(session, tenant_id, "config/versions")
            return {"tenant_id": tenant, "versions": configs.config_versions(session, tenant)}
