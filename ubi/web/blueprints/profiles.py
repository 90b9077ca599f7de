"""Profiles and summaries (SPEC §6): an actor, a team, the tenant."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from ubi import clock
from ubi.models import read_scope
from ubi.services import configs, profiles
from ubi.web.auth import ForbiddenError, current_principal, requires
from ubi.web.blueprints.common import (
    ACTOR_ID,
    AUTH,
    TEAM_ID,
    TENANT_ID,
    document_response,
    pseudonymiser,
    reading_tenant,
)
from ubi.web.blueprints.read_schemas import (
    ActorProfileSchema,
    TeamSummarySchema,
    TenantSummarySchema,
    ViewArgsSchema,
)
from ubi.web.errors import ApiError, ErrorSchema

blp = Blueprint("profiles", __name__, description="Actor profiles, team and tenant summaries")

def _not_found(exc: profiles.NotFound) -> ApiError:
    return ApiError(404, str(exc), code="not_found")


@blp.route("/actors/<path:actor_id>/profile")
class ActorProfile(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, ActorProfileSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed actor_id or tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="no ubi:read:actor, another "
                      "tenant, or actor-level views turned off by the tenant")
    @blp.alt_response(404, schema=ErrorSchema, description="no such actor in the tenant")
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:actor")
    @blp.arguments(ViewArgsSchema(), location="query")
    def get(self, args: dict[str, Any], actor_id: str) -> Response:
        """An actor (by the original id; UBI pseudonymises it): type, team, first and last
        seen, dimension scores, features of the window against their baselines, and recent
        signals by dimension."""
        ACTOR_ID.check("actor_id", actor_id)
        with read_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "actors/profile")
            config = configs.load_config(session, tenant)
            if not config.actor_level_views:
                raise ForbiddenError("actor-level views are turned off by the tenant's "
                                     "privacy settings")
            pseudonym = pseudonymiser().pseudonym(tenant, actor_id)
            try:
                doc = profiles.actor_profile(session, tenant, config, pseudonym,
                                             actor_id=actor_id, window=args["window"],
                                             now=clock.utcnow())
            except profiles.NotFound as exc:
                raise _not_found(exc) from exc
        return document_response(doc)


@blp.route("/teams/<string:team_id>/summary")
class TeamSummary(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, TeamSummarySchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed team_id or tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such team, or one below "
                      "min_team_size (the same answer)")
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:team")
    @blp.arguments(ViewArgsSchema(), location="query")
    def get(self, args: dict[str, Any], team_id: str) -> Response:
        """A team's aggregates, scores and team signals (teams of at least min_team_size)."""
        TEAM_ID.check("team_id", team_id)
        sees_actors = current_principal().has("ubi:read:actor")
        with read_scope() as session:
            tenant = reading_tenant(session, args.get("tenant_id"), "teams/summary")
            config = configs.load_config(session, tenant)
            try:
                doc = profiles.team_summary(session, tenant, config, team_id,
                                            window=args["window"], sees_actors=sees_actors,
                                            now=clock.utcnow())
            except profiles.NotFound as exc:
                raise _not_found(exc) from exc
        return document_response(doc)


@blp.route("/tenants/<string:tenant_id>/summary")
class TenantSummary(MethodView):
    @blp.doc(security=AUTH)
    @blp.response(200, TenantSummarySchema)
    @blp.alt_response(400, schema=ErrorSchema, description="a malformed tenant_id")
    @blp.alt_response(401, schema=ErrorSchema)
    @blp.alt_response(403, schema=ErrorSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no data for the tenant")
    @blp.alt_response(422, schema=ErrorSchema)
    @requires("ubi:read:tenant")
    @blp.arguments(ViewArgsSchema(), location="query")
    def get(self, args: dict[str, Any], tenant_id: str) -> Response:
        """The tenant's aggregates, scores and signals, and its teams' scores."""
        TENANT_ID.check("tenant_id", tenant_id)
        sees_actors = current_principal().has("ubi:read:actor")
        with read_scope() as session:
            tenant = reading_tenant(session, tenant_id, "tenants/summary")
            config = configs.load_config(session, tenant)
            try:
                doc = profiles.tenant_summary(session, tenant, config, window=args["window"],
                                              sees_actors=sees_actors, now=clock.utcnow())
            except profiles.NotFound as exc:
                raise _not_found(exc) from exc
        return document_response(doc)
