"""Schemas of the read side (SPEC §5.5, §6): signals, scores, features, profiles."""

from __future__ import annotations

import marshmallow as ma

from ubi.analytics.taxonomy import DIMENSIONS, SEVERITIES, SIGNAL_TYPES, WINDOWS

SCOPES = ("actor", "team", "cohort", "tenant")


class SignalSchema(ma.Schema):
    """A ``BehaviouralSignal`` (SPEC §5.5)."""

    signal_id = ma.fields.String(required=True)
    tenant_id = ma.fields.String(required=True)
    actor_scope = ma.fields.String(required=True, metadata={"enum": list(SCOPES)})
    subject_id = ma.fields.String(required=True, metadata={
        "description": "team id, cohort (actor type) or tenant id; an actor's pseudonym, "
                       "only for callers with ubi:read:actor"})
    actor_id = ma.fields.String(metadata={"description": "the actor id the caller named "
                                          "(GET /signals/recent)"})
    team_id = ma.fields.String(allow_none=True)
    dimension = ma.fields.String(required=True, metadata={"enum": list(DIMENSIONS)})
    signal_class = ma.fields.String(required=True)
    signal_type = ma.fields.String(required=True, metadata={"enum": list(SIGNAL_TYPES)})
    score = ma.fields.Float(required=True)
    severity = ma.fields.String(required=True, metadata={"enum": list(SEVERITIES)})
    confidence = ma.fields.Float(required=True)
    status = ma.fields.String(required=True, metadata={"enum": ["active", "resolved"]})
    reason = ma.fields.String(required=True)
    evidence_refs = ma.fields.Dict(required=True, metadata={
        "description": "feature ids, baseline ids, event summary (counts and time span)"})
    features_snapshot = ma.fields.Dict(required=True)
    intent = ma.fields.String(allow_none=True)
    expected_outcome = ma.fields.String(allow_none=True)
    day = ma.fields.Date(required=True, metadata={"description": "last UTC day evaluated"})
    first_day = ma.fields.Date(allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    updated_at = ma.fields.DateTime(required=True)
    resolved_at = ma.fields.DateTime(allow_none=True)
    version = ma.fields.Integer(required=True)


class ScoreSchema(ma.Schema):
    score = ma.fields.Float(allow_none=True, metadata={"description": "0-100; 50 = normal"})
    previous_score = ma.fields.Float(allow_none=True)
    confidence = ma.fields.Float(required=True)
    reason = ma.fields.String(required=True)


class BaselineViewSchema(ma.Schema):
    baseline_id = ma.fields.String(required=True)
    day_type = ma.fields.String(required=True)
    mean = ma.fields.Float(allow_none=True)
    std_dev = ma.fields.Float(allow_none=True)
    p50 = ma.fields.Float(allow_none=True)
    p90 = ma.fields.Float(allow_none=True)
    n_observations = ma.fields.Integer(required=True)
    confidence = ma.fields.Float(required=True)


class FeatureViewSchema(ma.Schema):
    feature_id = ma.fields.String(required=True)
    feature_name = ma.fields.String(required=True)
    dimension = ma.fields.String(required=True)
    window = ma.fields.String(required=True)
    value = ma.fields.Float(allow_none=True)
    unit = ma.fields.String(required=True)
    volume_only = ma.fields.Boolean(required=True)
    confidence = ma.fields.Float(required=True)
    baseline = ma.fields.Nested(BaselineViewSchema, allow_none=True)
    z = ma.fields.Float(allow_none=True, metadata={
        "description": "(value - baseline mean) / std_dev (SPEC §5.3); none while the "
                       "baseline is warming up"})


class SubjectViewSchema(ma.Schema):
    tenant_id = ma.fields.String(required=True)
    window = ma.fields.String(required=True, metadata={"enum": list(WINDOWS)})
    as_of = ma.fields.Date(allow_none=True, metadata={
        "description": "the tenant's last evaluated UTC day, which the view describes"})
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ScoreSchema),
                            required=True)
    features = ma.fields.List(ma.fields.Nested(FeatureViewSchema), required=True)
    signals = ma.fields.Dict(keys=ma.fields.String(),
                             values=ma.fields.List(ma.fields.Nested(SignalSchema)),
                             required=True, metadata={"description": "by dimension"})
    stale = ma.fields.Boolean(required=True)


class ActorSchema(ma.Schema):
    actor_id = ma.fields.String(required=True)
    pseudonym = ma.fields.String(required=True)
    actor_type = ma.fields.String(required=True)
    team_id = ma.fields.String(allow_none=True)
    first_seen = ma.fields.Date(required=True)
    last_seen = ma.fields.Date(required=True)


class ActorProfileSchema(SubjectViewSchema):
    actor = ma.fields.Nested(ActorSchema, required=True)


class TeamSchema(ma.Schema):
    team_id = ma.fields.String(required=True)
    actors = ma.fields.Integer(required=True, metadata={
        "description": "actors with events in the window"})


class TeamSummarySchema(SubjectViewSchema):
    team = ma.fields.Nested(TeamSchema, required=True)


class TenantTeamSchema(TeamSchema):
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ScoreSchema))


class TenantSummarySchema(SubjectViewSchema):
    teams = ma.fields.List(ma.fields.Nested(TenantTeamSchema), required=True, metadata={
        "description": "teams of at least min_team_size actors"})


class ViewArgsSchema(ma.Schema):
    tenant_id = ma.fields.String(metadata={"description": "default: the caller's tenant"})
    window = ma.fields.String(load_default="7d", validate=ma.validate.OneOf(list(WINDOWS)))
