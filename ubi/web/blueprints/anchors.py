"""Re-anchored baselines (SPEC §5.2): readers' "new normal" anchors, listed and undone."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi import clock
from ubi.models import session_scope
from ubi.services import anchors
from ubi.web.auth import current_principal, requires
from ubi.web.blueprints.common import AUTH, reading_tenant
from ubi.web.errors import ApiError, ErrorSchema

blp = Blueprint("anchors", __name__, description="Re-anchored baselines (new normal feedback)")


class AnchorArgsSchema(ma.Schema):
    tenant_id = ma.fields.String(metadata={"description": "default: the caller's tenant"})
    include_undone = ma.fields.Boolean(load_default=False)


class TenantArgsSchema(ma.Schema):
    tenant_id = ma.fields.String(metadata={"description": "default: the caller's tenant"})


class AnchorSchema(ma.Schema):
    anchor_id = ma.fields.String(required=True)
    actor_scope = ma.fields.String(required=True)
    subject_id = ma.fields.String(required=True, metadata={
        "description": "the actor's pseudonym (SPEC §8)"})
    feature_name = ma.fields.String(required=True)
    anchor_day = ma.fields.Date(required=True, metadata={
        "description": "the baseline learns only from the days after it"})
    signal_id = ma.fields.String(required=True)
    created_by = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)
    undone_at = ma.fields.DateTime(allow_none=True)
    undone_by = ma.fields.String(allow_none=True)
    undo_reason = ma.fields.String(allow_none=True, metadata={
        "enum": [anchors.SUPERSEDED, anchors.VERDICT_CHANGED, anchors.UNDONE]})


class AnchorListSchema(ma.Schema):
    tenant_id = ma.fields.String(required=True)
    anchors = ma.fields.List(ma.fields.Nested(AnchorSchema), required=True)


@blp.route("/baselines/anchors")
class AnchorList(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, AnchorListSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:actor")
    @blp.arguments(AnchorArgsSchema(), location="query")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The tenant's baseline anchors, newest first (actor pseudonyms: needs
        ubi:read:actor)."""
        with session_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "baselines/anchors")
            return {"tenant_id": tenant, "anchors": anchors.listing(
                session, tenant, include_undone=args["include_undone"])}


@blp.route("/baselines/anchors/<string:anchor_id>")
class AnchorResource(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, AnchorSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="only an admin undoes an anchor")
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("admin")
    @blp.arguments(TenantArgsSchema(), location="query")
    def delete(self, args: dict[str, Any], anchor_id: str) -> dict[str, Any]:
        """Undo an anchor (admins): the series' baseline reads its whole history again from the
        next computation. Audited; the anchor stays listed as undone."""
        with session_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "baselines/anchors")
            row = anchors.undo(session, tenant, anchor_id, by=current_principal().sub,
                               now=clock.utcnow())
            if row is None:
                raise ApiError(404, f"no anchor {anchor_id} in tenant {tenant}",
                               code="not_found")
            return anchors.describe(row)
