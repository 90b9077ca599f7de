"""De-identified exports of a tenant's aggregates (SPEC §6 ``GET /export``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import marshmallow as ma
from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi.models import session_scope
from ubi.services import exports
from ubi.web.auth import requires
from ubi.web.blueprints.common import AUTH, reading_tenant
from ubi.web.errors import ErrorSchema

blp = Blueprint("export", __name__, description="De-identified aggregate exports")

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
#: Longest range one export covers.
MAX_DAYS = 800


class ExportArgsSchema(ma.Schema):
    tenant_id = ma.fields.String(metadata={"description": "default: the caller's tenant"})
    from_ = ma.fields.Date(data_key="from", required=True, metadata={"description": "UTC day"})
    to = ma.fields.Date(required=True, metadata={"description": "UTC day (inclusive)"})
    format = ma.fields.String(load_default="jsonl", validate=ma.validate.OneOf(exports.FORMATS))

    @ma.validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        if data["from_"] > data["to"]:
            raise ma.ValidationError("must not be after to", field_name="from")
        if (data["to"] - data["from_"]).days >= MAX_DAYS:
            raise ma.ValidationError(f"at most {MAX_DAYS} days per export", field_name="to")


@blp.route("/export")
class Export(MethodView):
    @blp.doc(security=AUTH, responses={"200": {
        "description": "team, cohort and tenant feature rows, one per line (JSON lines) or "
                       "CSV with a header; columns " + ", ".join(exports.COLUMNS),
        "content": {m: {"schema": {"type": "string"}} for m in MEDIA_TYPES.values()}}})
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:tenant")
    @blp.arguments(ExportArgsSchema(), location="query")
    def get(self, args: dict[str, Any]) -> Response:
        """The tenant's team, cohort and tenant aggregates of a range of days, streamed: no
        actor ids, no pseudonyms, no group under min_team_size."""
        with session_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "export")
        first, last, fmt = args["from_"], args["to"], args["format"]

        def body() -> Iterator[str]:
            with session_scope() as session:
                yield from exports.render(exports.aggregate_rows(session, tenant, first, last),
                                          fmt)

        filename = f"ubi-{tenant}-{first}-{last}.{fmt}"
        return Response(stream_with_context(body()), mimetype=MEDIA_TYPES[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
