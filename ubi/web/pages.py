"""Pages for people (issue 21): a tenant's overview, a team's page, an actor's page, and
feedback on every signal, rendered on the server from the read API's services.

A plain Flask blueprint under ``/ui`` (not flask-smorest: it is no part of the API's OpenAPI
document). Access is the API's (SPEC §7): the same token, the same roles, the same tenant
rule and audit of privileged cross-tenant reads, and a reader without ``ubi:read:actor`` gets
no actor signal and no pseudonym (the services conceal them). Pages work without JavaScript;
the Content-Security-Policy allows nothing from any other host and no script at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ubi import clock
from ubi.analytics.taxonomy import DIMENSIONS, SEVERITIES
from ubi.models import session_scope
from ubi.services import configs, feedback, profiles, timelines
from ubi.services.signal_queries import SignalFilters, query_signals, subject_signals
from ubi.settings import Settings
from ubi.web import charts, page_auth
from ubi.web.auth import AuthError, ForbiddenError, Principal, current_principal
from ubi.web.blueprints.common import (
    ACTOR_ID,
    READ_ROLE,
    TEAM_ID,
    TENANT_ID,
    pseudonymiser,
    reading_tenant,
)
from ubi.web.blueprints.signals import feedback_target
from ubi.web.errors import ApiError

PREFIX = "/ui"
#: The window of the scores shown, and how many days the team page's timelines span.
WINDOW = "7d"
TIMELINE_DAYS = 90
VERDICT_LABELS = {"useful": "Useful", "false_positive": "False positive",
                  "new_normal": "New normal"}
#: No script at all, nothing from another host; inline SVG needs no allowance.
CSP = ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
#: Views reachable without a session.
_PUBLIC = {"pages.sign_in", "pages.sign_in_post", "pages.static"}

bp = Blueprint("pages", __name__, url_prefix=PREFIX, template_folder="templates",
               static_folder="static")


def _settings() -> Settings:
    return current_app.config["UBI_SETTINGS"]


@bp.before_request
def _authenticate() -> Response | None:
    if request.endpoint in _PUBLIC:
        return None
    principal, problem = page_auth.signed_in(_settings())
    if principal is None:
        if request.method != "GET":
            raise AuthError(problem or "not signed in")
        query = {"next": request.full_path.rstrip("?")} | ({"problem": problem} if problem
                                                            else {})
        return redirect(f"{url_for('pages.sign_in')}?{urlencode(query)}", 303)
    g.ubi_principal = principal  # what current_principal() and reading_tenant() read
    if request.method == "POST":
        page_auth.check_csrf(_settings(), page_auth.session_token())
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The sign-in link carries a token: no page ever sends its address elsewhere.
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "pages.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def csrf_field_value() -> str:
    token = page_auth.session_token()
    return page_auth.csrf_token(_settings(), token) if token else ""


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response | tuple[str, int]:
    if exc.status == 401:
        return redirect(url_for("pages.sign_in", problem=exc.message), 303)
    return _error_page(exc.status, exc.message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return _error_page(exc.code or 500, exc.description or exc.name)


def _error_page(status: int, message: str) -> tuple[str, int]:
    titles = {403: "Not allowed", 404: "Not found"}
    return render_template("pages/error.html", title=titles.get(status, "Something went "
                           "wrong"), message=message, status=status), status


# --- sign-in ---------------------------------------------------------------------------------

def sign_in_link(base_url: str, token: str) -> str:
    """A development sign-in link (``ubi token --url``, ``ubi demo --serve``): opening it
    keeps ``token`` in the session cookie. A token in an address can end up in logs and
    history; in production sign in with the form."""
    return f"{base_url.rstrip('/')}{PREFIX}/sign-in?{urlencode({'token': token})}"


def _local_next(target: str | None) -> str:
    """Where to go after a sign-in or a post: a page of this site only (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return url_for("pages.home")


@bp.get("/sign-in")
def sign_in() -> Response | tuple[str, int]:
    """The sign-in form; with ``?token=`` (the development link of ``ubi token --url``) the
    token is checked, kept in the cookie, and the browser sent on at once."""
    settings = _settings()
    token = request.args.get("token")
    if token:
        return _start(settings, token.strip(), request.args.get("next"))
    nonce = page_auth.sign_in_nonce()
    body = render_template("pages/sign_in.html", title="Sign in",
                           problem=request.args.get("problem"),
                           next=_local_next(request.args.get("next")),
                           sign_in_csrf=page_auth.csrf_token(settings, nonce))
    response = current_app.make_response(body)
    page_auth.keep_sign_in_nonce(response, nonce)
    return response


@bp.post("/sign-in")
def sign_in_post() -> Response:
    settings = _settings()
    page_auth.check_csrf(settings, request.cookies.get(page_auth.SIGN_IN_COOKIE))
    return _start(settings, request.form.get("token", "").strip(), request.form.get("next"))


def _start(settings: Settings, token: str, next_page: str | None) -> Response:
    from ubi.web.auth import verifier

    try:
        principal = verifier(settings).verify(token)
    except AuthError as exc:
        return redirect(url_for("pages.sign_in", problem=exc.message), 303)
    response = redirect(_local_next(next_page), 303)
    page_auth.start_session(response, token, principal)
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    response = redirect(url_for("pages.sign_in"), 303)
    page_auth.end_session(response)
    return response


@bp.get("/")
def home() -> Response | tuple[str, int]:
    principal = current_principal()
    if principal.tenant_id is None:
        return _error_page(400, "The token names no tenant: open /ui/tenants/<tenant id>.")
    return redirect(url_for("pages.overview", tenant_id=principal.tenant_id), 303)


# --- pages -----------------------------------------------------------------------------------

def _reader(principal: Principal) -> dict[str, bool]:
    return {role.rsplit(":", 1)[1]: principal.has(role) for role in READ_ROLE.values()}


def _page(template: str, **context: Any) -> str:
    principal = current_principal()
    return render_template(template, principal=principal, reads=_reader(principal),
                           dimensions=DIMENSIONS, verdict_labels=VERDICT_LABELS,
                           notice=_notice(), **context)


def _notice() -> str | None:
    verdict = request.args.get("verdict")
    if verdict in VERDICT_LABELS:
        return f"Feedback stored: {VERDICT_LABELS[verdict].lower()}. Thank you."
    return None


def _readable_scopes(principal: Principal) -> list[str]:
    return [scope for scope, role in READ_ROLE.items() if principal.has(role)]


def _with_verdicts(session: Session, principal: Principal,
                   signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mine = feedback.verdicts_of(session, principal.sub, [s["signal_id"] for s in signals])
    return [{**s, "my_verdict": mine.get(s["signal_id"])} for s in signals]


@bp.get("/tenants/<string:tenant_id>")
def overview(tenant_id: str) -> str:
    """Teams with their scores and trend, active signals by severity, the stale banner."""
    principal = current_principal()
    principal.require("ubi:read:team", "ubi:read:tenant")
    TENANT_ID.check("tenant_id", tenant_id)
    sees_actors = principal.has("ubi:read:actor")
    with session_scope() as session:
        tenant = reading_tenant(session, tenant_id, "ui/overview")
        config = configs.load_config(session, tenant)
        try:
            summary = profiles.tenant_summary(session, tenant, config, window=WINDOW,
                                              sees_actors=sees_actors, now=clock.utcnow())
        except profiles.NotFound:
            summary = None
        teams: list[dict[str, Any]] = []
        by_severity: dict[str, list[dict[str, Any]]] = {}
        if summary is not None and summary["as_of"] is not None:
            teams = summary["teams"]
            trends = timelines.score_trends(session, tenant, "team",
                                            [t["team_id"] for t in teams], window=WINDOW,
                                            as_of=summary["as_of"])
            teams = [{**t, "trend": trends.get(t["team_id"], {})} for t in teams]
            active = query_signals(
                session, tenant, config,
                SignalFilters(scopes=_readable_scopes(principal), status="active"),
                sees_actors=sees_actors, page_size=200).signals
            active = _with_verdicts(session, principal, active)
            by_severity = {sev: [s for s in active if s["severity"] == sev]
                           for sev in reversed(SEVERITIES)}
        # Tenant-wide aggregates are ubi:read:tenant's; a team reader sees the teams only.
        tenant_scores = summary["scores"] if summary and principal.has("ubi:read:tenant") \
            else {}
        return _page("pages/overview.html", title=f"{tenant}: overview", tenant=tenant,
                     summary=summary, teams=teams, tenant_scores=tenant_scores,
                     by_severity=by_severity, min_team_size=config.min_team_size)


@bp.get("/tenants/<string:tenant_id>/teams/<string:team_id>")
def team(tenant_id: str, team_id: str) -> str | tuple[str, int]:
    """A team's scores, 90-day timelines with signals marked, signals and opportunities."""
    principal = current_principal()
    principal.require("ubi:read:team")
    TENANT_ID.check("tenant_id", tenant_id)
    TEAM_ID.check("team_id", team_id)
    sees_actors = principal.has("ubi:read:actor")
    with session_scope() as session:
        tenant = reading_tenant(session, tenant_id, "ui/team")
        config = configs.load_config(session, tenant)
        try:
            summary = profiles.team_summary(session, tenant, config, team_id, window=WINDOW,
                                            sees_actors=sees_actors, now=clock.utcnow())
        except profiles.NotFound:
            # Below min_team_size reads exactly like an unknown team: the same page, which
            # names neither the team nor its size.
            return _page("pages/no_team.html", title="Not enough people to show",
                         tenant=tenant), 404
        as_of = summary["as_of"]
        first = as_of - timedelta(days=TIMELINE_DAYS - 1)
        history = timelines.score_history(session, tenant, "team", team_id, window=WINDOW,
                                          first=first, last=as_of)
        marked = subject_signals(session, tenant, config, "team", team_id, since=first,
                                 sees_actors=sees_actors, limit=200)
        recent = [s for dim in DIMENSIONS for s in summary["signals"].get(dim, [])]
        if sees_actors:  # the members' own signals, for readers who may see actors
            members = query_signals(session, tenant, config, SignalFilters(
                scopes=["actor"], team_ids=[team_id], time_from=first), sees_actors=True,
                page_size=200).signals
            marked += members
            since = as_of - timedelta(days=profiles.RECENT_DAYS)
            recent += [s for s in members if s["status"] == "active" or s["day"] >= since]
        recent = _with_verdicts(session, principal, recent)
        chart = charts.timeline(history, marked, first=first, last=as_of)
        return _page("pages/team.html", title=f"Team {team_id}", tenant=tenant,
                     team_id=team_id, summary=summary, chart=chart,
                     risks=[s for s in recent if s["signal_type"] != "opportunity"],
                     opportunities=[s for s in recent if s["signal_type"] == "opportunity"])


@bp.get("/tenants/<string:tenant_id>/actor")
def actor(tenant_id: str) -> str | tuple[str, int]:
    """An actor's profile by the original id (``?actor_id=``): only for readers with
    ``ubi:read:actor`` of tenants whose policy allows actor-level views."""
    principal = current_principal()
    principal.require("ubi:read:actor")
    TENANT_ID.check("tenant_id", tenant_id)
    with session_scope() as session:
        tenant = reading_tenant(session, tenant_id, "ui/actor")
        config = configs.load_config(session, tenant)
        if not config.actor_level_views:
            raise ForbiddenError("actor-level views are turned off by the tenant's privacy "
                                 "settings")
        actor_id = request.args.get("actor_id", "").strip()
        profile = None
        if actor_id:
            ACTOR_ID.check("actor_id", actor_id)
            pseudonym = pseudonymiser().pseudonym(tenant, actor_id)
            try:
                profile = profiles.actor_profile(session, tenant, config, pseudonym,
                                                 actor_id=actor_id, window=WINDOW,
                                                 now=clock.utcnow())
            except profiles.NotFound:
                return _page("pages/actor.html", title="Actor", tenant=tenant,
                             actor_id=actor_id, profile=None, signals=[]), 404
        signals = [] if profile is None else _with_verdicts(
            session, principal, [s for dim in DIMENSIONS for s in profile["signals"].get(
                dim, [])])
        return _page("pages/actor.html", title="Actor", tenant=tenant, actor_id=actor_id,
                     profile=profile, signals=signals)


@bp.post("/signals/<string:signal_id>/feedback")
def give_feedback(signal_id: str) -> Response:
    """A verdict from a signal's buttons, through the API's feedback service; back to the
    page the buttons were on, which shows the verdict."""
    principal = current_principal()
    verdict = request.form.get("verdict", "")
    if verdict not in feedback.VERDICTS:
        raise ApiError(400, f"verdict: one of {', '.join(feedback.VERDICTS)}")
    with session_scope() as session:
        signal = feedback_target(session, signal_id, "ui/feedback")
        feedback.record_feedback(session, signal, reader=principal.sub, verdict=verdict,
                                 note=None, now=clock.utcnow())
    back = urlsplit(_local_next(request.form.get("next")))
    query = [(k, v) for k, v in parse_qsl(back.query) if k != "verdict"] + [
        ("verdict", verdict)]
    return redirect(f"{back.path}?{urlencode(query)}#signal-{signal_id}", 303)
