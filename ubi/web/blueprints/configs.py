"""Tenant configuration (SPEC §6, §10)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi.models import session_scope
from ubi.services import configs
from ubi.web.auth import current_principal, requires
from ubi.web.blueprints.common import AUTH, TENANT_ID, settings
from ubi.web.errors import ErrorSchema

blp = Blueprint("config", __name__, description="Per-tenant configuration, versioned")


class ConfigSchema(ma.Schema):
    version = ma.fields.Integer(required=True)
    config = ma.fields.Dict(required=True)
    snapshot_hash = ma.fields.String(required=True)


@blp.route("/config/<string:tenant_id>")
class TenantConfigResource(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, ConfigSchema)
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @requires("ubi:read:tenant")
    def get(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's current config and its version (version 0: defaults)."""
        TENANT_ID.check("tenant_id", tenant_id)
        current_principal().require_tenant(tenant_id)
        with session_scope(settings()) as session:
            return configs.describe(configs.load_config(session, tenant_id, cached=False))
