"""Helpers shared by the blueprints: settings access, id validation, security docs, the
tenant a read is for."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
import orjson
from flask import Response, current_app
from sqlalchemy.orm import Session

from ubi.analytics.envelope import UNSTORABLE_TEXT
from ubi.analytics.privacy import Pseudonymiser
from ubi.settings import Settings
from ubi.web.errors import ApiError

AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def settings() -> Settings:
    return current_app.config["UBI_SETTINGS"]


@dataclass(frozen=True)
class IdRule:
    pattern: re.Pattern[str]
    description: str

    def check(self, field: str, value: str) -> str:
        if not self.pattern.match(value):
            raise ApiError(400, f"{field}: {self.description}", code="bad_request",
                           errors={field: self.description})
        return value


UNSTORABLE_REASON = "may not contain the NUL character (\\u0000) or a lone UTF-16 surrogate"


class Text(ma.fields.String):
    """A string of a request that refuses text that cannot be stored or encoded: a 422 naming
    the field instead of the database's or the encoder's error (a 500)."""

    default_error_messages = {"unstorable": UNSTORABLE_REASON}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if UNSTORABLE_TEXT.search(text):
            raise self.make_error("unstorable")
        return text


TENANT_ID = IdRule(re.compile(r"^[A-Za-z0-9_.-]{1,64}$"), "1-64 characters of [A-Za-z0-9_.-]")
#: Actor and team ids are the producers' own: any text but NUL, as SPEC §3 bounds them.
ACTOR_ID = IdRule(re.compile(r"^[^\x00]{1,256}$"), "1-256 characters")
TEAM_ID = IdRule(re.compile(r"^[^\x00]{1,256}$"), "1-256 characters")


#: The role that reads signals and summaries of each scope (SPEC §7).
READ_ROLE = {"actor": "ubi:read:actor", "team": "ubi:read:team", "cohort": "ubi:read:tenant",
             "tenant": "ubi:read:tenant"}


def reading_tenant(session: Session, tenant_id: str | None, endpoint: str) -> str:
    """The tenant a read is for: the caller's own, or the one a privileged caller names (an
    audited cross-tenant read). 400 when none is named or known, 403 for another tenant."""
    from flask import g

    from ubi import clock
    from ubi.services import audit
    from ubi.web.auth import current_principal

    principal = current_principal()
    tenant = tenant_id or principal.tenant_id
    if not tenant:
        raise ApiError(400, "tenant_id: required (the token names no tenant)",
                       code="bad_request", errors={"tenant_id": "required"})
    TENANT_ID.check("tenant_id", tenant)
    principal.require_tenant(tenant)
    if tenant != principal.tenant_id:
        audit.record(session, tenant_id=tenant, action="read.cross_tenant",
                     principal=principal.sub, now=clock.utcnow(),
                     request_id=g.get("request_id"),
                     details={"endpoint": endpoint, "caller_tenant": principal.tenant_id,
                              "roles": sorted(principal.roles)})
    return tenant


def pseudonymiser() -> Pseudonymiser:
    return _pseudonymiser(settings().pseudonym_secret)


@functools.lru_cache(maxsize=2)
def _pseudonymiser(secret: bytes) -> Pseudonymiser:
    return Pseudonymiser(secret)


def document_response(doc: Mapping[str, Any], status: int = 200) -> Response:
    """A read's document as the response, serialised once by orjson. The services build it in
    its schema's shape already (the schema documents it; the conformance test holds the two
    together): marshmallow's dump of a page of signals cost more than reading it."""
    return current_app.response_class(orjson.dumps(doc), status=status,
                                      mimetype="application/json")
