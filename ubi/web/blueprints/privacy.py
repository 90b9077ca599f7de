"""Privacy deletions (SPEC §6, §8): ``POST /privacy/deletions`` (also Data Governance's
callback: its service token carries ``ubi:admin:privacy``) and the job's status."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi.models import DeletionJob, session_scope
from ubi.services import deletions
from ubi.services.followups import OWED_KEY
from ubi.web.auth import current_principal, requires
from ubi.web.blueprints.common import (
    AUTH,
    TENANT_ID,
    UNSTORABLE_TEXT,
    Text,
    document_response,
    pseudonymiser,
)
from ubi.web.errors import ApiError, ErrorSchema

log = logging.getLogger("ubi.web.privacy")
blp = Blueprint("privacy", __name__, description="Privacy deletions")

ROLE = "ubi:admin:privacy"


class DeletionRangeSchema(ma.Schema):
    from_ = ma.fields.Date(data_key="from", metadata={
        "description": "first UTC day deleted (default: the oldest)"})
    to = ma.fields.Date(metadata={"description": "last UTC day deleted, inclusive "
                                                 "(default: the newest)"})

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ma.ValidationError("must not be after to", field_name="from")


class DeletionRequestSchema(ma.Schema):
    tenant_id = Text(required=True)
    actor_id = Text(validate=ma.validate.Length(1, 256), metadata={
        "description": "the actor's original id (UBI pseudonymises it); absent: every actor "
                       "of the tenant"})
    time_range = ma.fields.Nested(DeletionRangeSchema, metadata={
        "description": "whole UTC days; absent: all of the actor's (or tenant's) data"})


class DeletionJobSchema(ma.Schema):
    job_id = ma.fields.String(required=True)
    tenant_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"enum": list(deletions.STATUSES)})
    actor_scoped = ma.fields.Boolean(required=True, metadata={
        "description": "one actor's data (never shown: neither id nor pseudonym) or all"})
    time_from = ma.fields.DateTime(allow_none=True, metadata={
        "description": "first instant deleted (a UTC midnight)"})
    time_to = ma.fields.DateTime(allow_none=True, metadata={
        "description": "end of the deleted range, exclusive (a UTC midnight)"})
    requested_by = ma.fields.String(required=True)
    counts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                            required=True, metadata={
                                "description": "rows removed, tombstoned or recomputed per "
                                               "table (when done)"})
    error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


def _midnight(day: Any) -> datetime | None:
    return datetime.combine(day, time(), tzinfo=UTC) if day is not None else None


def _job_document(job: DeletionJob) -> dict[str, Any]:
    doc = deletions.describe(job)
    for key in ("time_from", "time_to", "created_at", "started_at", "finished_at"):
        value = doc[key]
        doc[key] = value.isoformat() if value is not None else None
    return doc


@blp.route("/privacy/deletions")
class Deletions(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(202, DeletionJobSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a body that is not JSON or a "
                      "malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="no ubi:admin:privacy, or "
                      "another tenant")
    @blp.alt_response(422, schema=ErrorSchema, description="invalid body (names the field)")
    @requires(ROLE)
    @blp.arguments(DeletionRequestSchema())
    def post(self, body: dict[str, Any]) -> Response:
        """Delete a tenant's data, one actor's or all, over whole UTC days or all time:
        events, rollups, features, baselines, anomalies, scores and signals, then recompute
        what depended on them. Answers at once with the job (queued); audited."""
        principal = current_principal()
        tenant = TENANT_ID.check("tenant_id", body["tenant_id"])
        principal.require_tenant(tenant)
        actor = body.get("actor_id")
        time_range = body.get("time_range") or {}
        last = time_range.get("to")
        with session_scope() as session:
            job_id = deletions.request_deletion(
                session, tenant_id=tenant,
                actor_id=pseudonymiser().pseudonym(tenant, actor) if actor else None,
                time_from=_midnight(time_range.get("from_")),
                # (the last day there is has no midnight after it: open-ended)
                time_to=_midnight(last + timedelta(days=1)) if last and last < date.max
                else None,
                requested_by=principal.sub, reason="privacy_request")
            owed = list(session.info.pop(OWED_KEY, []))
            job = session.get(DeletionJob, job_id)
            assert job is not None
            doc = _job_document(job)
        _send_owed(owed)
        return document_response(doc, status=202)


def _send_owed(owed: list[Any]) -> None:
    """Send the job's task now that it is committed; if the broker is down, the task outbox
    drain sends it later (the job is recorded either way)."""
    from ubi.celery_app import app
    from ubi.tasks.base import dispatch_followups

    try:
        dispatch_followups(app, owed)
    except Exception as exc:
        log.warning("deletion task left to the outbox drain: %s", exc)


@blp.route("/privacy/deletions/<string:job_id>")
class DeletionStatus(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, DeletionJobSchema)
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="no ubi:admin:privacy")
    @blp.alt_response(404, schema=ErrorSchema, description="no such job for the caller")
    @requires(ROLE)
    def get(self, job_id: str) -> Response:
        """A deletion job's status and, once done, its counts per table."""
        principal = current_principal()
        with session_scope() as session:
            known = len(job_id) <= 36 and not UNSTORABLE_TEXT.search(job_id)
            job = session.get(DeletionJob, job_id) if known else None
            # Another tenant's job is unknown to this caller: nothing about it may leak.
            if job is None or not principal.may_access_tenant(job.tenant_id):
                raise ApiError(404, f"no deletion job {job_id}", code="not_found")
            return document_response(_job_document(job))
