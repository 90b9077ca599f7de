"""Signals over HTTP (SPEC §6): query with a cursor, an actor's recent signals, feedback."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from ubi import clock
from ubi.analytics.taxonomy import DIMENSIONS, SEVERITIES, SIGNAL_TYPES
from ubi.models import Signal, read_scope, session_scope
from ubi.services import configs, feedback, freshness
from ubi.services.signal_queries import (
    MAX_PAGE,
    STATUSES,
    CursorError,
    SignalFilters,
    query_signals,
    recent_signals,
)
from ubi.web.auth import ForbiddenError, current_principal, requires
from ubi.web.blueprints.common import (
    AUTH,
    READ_ROLE,
    UNSTORABLE_TEXT,
    Text,
    document_response,
    pseudonymiser,
    reading_tenant,
)
from ubi.web.blueprints.read_schemas import SCOPES, SignalSchema
from ubi.web.errors import ApiError, ErrorSchema

blp = Blueprint("signals", __name__, description="Signals: queries, recent, feedback")

_ANY_READ = tuple(sorted(set(READ_ROLE.values())))


class TimeRangeSchema(ma.Schema):
    from_ = ma.fields.Date(data_key="from", metadata={"description": "first UTC day"})
    to = ma.fields.Date(metadata={"description": "last UTC day"})

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ma.ValidationError("must not be after to", field_name="from")


class FiltersSchema(ma.Schema):
    min_severity = ma.fields.String(validate=ma.validate.OneOf(SEVERITIES))
    actor_ids = ma.fields.List(Text(validate=ma.validate.Length(1, 256)),
                               validate=ma.validate.Length(max=1000),
                               metadata={"description": "original actor ids "
                                                        "(needs ubi:read:actor)"})
    team_ids = ma.fields.List(Text(validate=ma.validate.Length(1, 256)),
                              validate=ma.validate.Length(max=1000))
    signal_types = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(SIGNAL_TYPES)))
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))


class SignalQuerySchema(ma.Schema):
    tenant_id = ma.fields.String(required=True)
    scope = ma.fields.String(validate=ma.validate.OneOf(SCOPES), metadata={
        "description": "default: every scope the caller may read"})
    dimensions = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(DIMENSIONS)))
    time_range = ma.fields.Nested(TimeRangeSchema)
    filters = ma.fields.Nested(FiltersSchema)
    page_size = ma.fields.Integer(load_default=100, validate=ma.validate.Range(1, MAX_PAGE))
    cursor = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=512))


class SignalPageSchema(ma.Schema):
    signals = ma.fields.List(ma.fields.Nested(SignalSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True, metadata={
        "description": "pass back as cursor for the next page; null on the last page"})
    stale = ma.fields.Boolean(required=True)


class RecentArgsSchema(ma.Schema):
    tenant_id = ma.fields.String()
    actor_id = ma.fields.String(required=True, validate=ma.validate.Length(1, 256))
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(1, MAX_PAGE))


class RecentSchema(ma.Schema):
    signals = ma.fields.List(ma.fields.Nested(SignalSchema), required=True)
    stale = ma.fields.Boolean(required=True)


class FeedbackSchema(ma.Schema):
    verdict = ma.fields.String(required=True, validate=ma.validate.OneOf(feedback.VERDICTS))
    note = Text(allow_none=True, validate=ma.validate.Length(max=feedback.NOTE_MAX))


class FeedbackStoredSchema(ma.Schema):
    feedback_id = ma.fields.String(required=True)
    signal_id = ma.fields.String(required=True)
    verdict = ma.fields.String(required=True)
    note = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)
    anchored_features = ma.fields.List(ma.fields.String(), required=True, metadata={
        "description": "new_normal on an actor signal: the features whose baselines now "
                       "learn only from the days after the signal's day (SPEC §5.2)"})
    suggested_config_versions = ma.fields.List(ma.fields.Integer(), required=True, metadata={
        "description": "config versions of kind suggestion this feedback led to (raised "
                       "thresholds, SPEC §10); never applied until an admin PUTs one"})


@blp.route("/query/signals")
class SignalQuery(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, SignalPageSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a body that is not JSON, a "
                      "malformed tenant_id, or a cursor this API did not issue")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="no role for the scope, or "
                      "another tenant")
    @blp.alt_response(422, schema=ErrorSchema, description="invalid body (names the field)")
    @requires(*_ANY_READ)
    @blp.arguments(SignalQuerySchema())
    def post(self, body: dict[str, Any]) -> Response:
        """A page of the tenant's signals, newest first, filtered. The cursor walk is stable:
        signals stored meanwhile never repeat or shift the pages still to come."""
        principal = current_principal()
        scopes = [body["scope"]] if "scope" in body else list(SCOPES)
        readable = [s for s in scopes if principal.has(READ_ROLE[s])]
        if not readable:
            raise ForbiddenError(f"requires role {READ_ROLE[scopes[0]]}")
        filters = body.get("filters", {})
        sees_actors = principal.has("ubi:read:actor")
        if filters.get("actor_ids") and not sees_actors:
            raise ForbiddenError("filters.actor_ids requires role ubi:read:actor")
        now = clock.utcnow()
        with read_scope() as session:
            tenant = reading_tenant(session, body["tenant_id"], "query/signals")
            config = configs.load_config(session, tenant)
            alias = pseudonymiser()
            time_range = body.get("time_range", {})
            query = SignalFilters(
                scopes=readable, dimensions=body.get("dimensions", ()),
                time_from=time_range.get("from_"), time_to=time_range.get("to"),
                min_severity=filters.get("min_severity"),
                subject_ids=[alias.pseudonym(tenant, a) for a in filters.get("actor_ids", ())],
                team_ids=filters.get("team_ids", ()),
                signal_types=filters.get("signal_types", ()), status=filters.get("status"))
            try:
                page = query_signals(session, tenant, config, query, sees_actors=sees_actors,
                                     page_size=body["page_size"], cursor=body.get("cursor"))
            except CursorError as exc:
                raise ApiError(400, f"cursor: {exc}", code="bad_request",
                               errors={"cursor": str(exc)}) from exc
            return document_response({
                "signals": page.signals, "next_cursor": page.next_cursor,
                "stale": freshness.is_stale(session, tenant, now=now)})


@blp.route("/signals/recent")
class RecentSignals(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, RecentSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:actor")
    @blp.arguments(RecentArgsSchema(), location="query")
    def get(self, args: dict[str, Any]) -> Response:
        """The newest signals of one actor, newest first, each with the ``actor_id`` asked
        for (the MMM engine's call). An actor without signals gets an empty list."""
        now = clock.utcnow()
        with read_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "signals/recent")
            config = configs.load_config(session, tenant)
            pseudonym = pseudonymiser().pseudonym(tenant, args["actor_id"])
            signals = recent_signals(session, tenant, config, pseudonym,
                                     actor_id=args["actor_id"], limit=args["limit"])
            return document_response({
                "signals": signals, "stale": freshness.is_stale(session, tenant, now=now)})


@blp.route("/signals/<string:signal_id>/feedback")
class SignalFeedback(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, FeedbackStoredSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a body that is not JSON")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="no read role for the signal's "
                      "scope")
    @blp.alt_response(404, schema=ErrorSchema, description="no such signal for the caller")
    @blp.alt_response(422, schema=ErrorSchema)
    @requires(*_ANY_READ)
    @blp.arguments(FeedbackSchema())
    def post(self, body: dict[str, Any], signal_id: str) -> dict[str, Any]:
        """The caller's verdict on a signal: useful, false_positive or new_normal (one per
        caller and signal; posting again changes it)."""
        principal = current_principal()
        with session_scope() as session:
            signal = feedback_target(session, signal_id, "signals/feedback")
            return feedback.record_feedback(session, signal, reader=principal.sub,
                                            verdict=body["verdict"], note=body.get("note"),
                                            now=clock.utcnow())


def feedback_target(session: Session, signal_id: str, endpoint: str) -> Signal:
    """The signal the caller gives feedback on (the API's and the pages'): 404 when it is
    unknown to the caller (another tenant's, or of a class the tenant disabled), 403 without
    the read role of its scope; a privileged caller's read of another tenant is audited."""
    principal = current_principal()
    known = len(signal_id) <= 64 and not UNSTORABLE_TEXT.search(signal_id)
    tenant = None if principal.privileged else principal.tenant_id  # None: any tenant's
    signal = (feedback.signal_for(session, signal_id, tenant)
              if known and (tenant or principal.privileged) else None)
    # Another tenant's signal is unknown to this caller: nothing about it may leak.
    if signal is None:
        raise ApiError(404, f"no signal {signal_id}", code="not_found")
    config = configs.load_config(session, signal.tenant_id)
    if not config.signal_class_enabled(signal.signal_class):
        raise ApiError(404, f"no signal {signal_id}", code="not_found")
    principal.require(READ_ROLE[signal.actor_scope])
    reading_tenant(session, signal.tenant_id, endpoint)
    return signal
