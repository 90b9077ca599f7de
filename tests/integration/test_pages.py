"""The pages for people (issue 21) through Flask's test client, on the tenant the real pipeline
filled (the ``acme`` fixture): the read API's organisation (16 people in three teams, the
third of 4 under min_team_size, one working late in the last week), stored, computed and
evaluated by the services the workers run, once for the module."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.organisation import NOW
from ubi.analytics.privacy import Pseudonymiser
from ubi.models import Signal, SignalFeedback, session_factory

ALL_READ = ("ubi:read:actor", "ubi:read:team", "ubi:read:tenant")
TEAM_READ = ("ubi:read:team", "ubi:read:tenant")
HEX64 = re.compile(r"[0-9a-f]{64}")
CSRF = re.compile(r'name="csrf_token" value="([A-Za-z0-9_-]*)"')


@pytest.fixture(autouse=True)
def wednesday(shared_clock) -> None:
    shared_clock.now = NOW


def sign_in(client: Any, token: str) -> None:
    resp = client.get(f"/ui/sign-in?token={token}")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/ui/")


def html(client: Any, url: str, status: int = 200) -> str:
    resp = client.get(url)
    assert resp.status_code == status, (url, resp.status_code, resp.get_data(as_text=True)[:500])
    return resp.get_data(as_text=True)


def csrf(page: str) -> str:
    match = CSRF.search(page)
    assert match and match.group(1), "no CSRF token on the page"
    return match.group(1)


def stored_signals(tenant: str) -> list[Signal]:
    with session_factory()() as s:
        return list(s.execute(sa.select(Signal).where(Signal.tenant_id == tenant))
                    .scalars())


def test_the_overview_shows_the_teams_scores_and_active_signals(client, tokens, acme
                                                               ) -> None:
    sign_in(client, tokens("acme", *TEAM_READ))
    resp = client.get("/ui/tenants/acme")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp
    assert "<script" not in page
    # The teams of at least min_team_size, each with a 0-100 score per dimension.
    assert 'href="/ui/tenants/acme/teams/alpha"' in page
    assert 'href="/ui/tenants/acme/teams/beta"' in page
    assert "teams/tiny" not in page
    scores = [int(s) for s in re.findall(r'<span class="score [a-z]+">(\d+)</span>', page)]
    assert scores and all(0 <= s <= 100 for s in scores)
    active = [s for s in stored_signals("acme")
              if s.status == "active" and s.actor_scope != "actor"]
    for sig in active:
        assert f'id="signal-{sig.signal_id}"' in page
    assert "Active signals" in page
    # Home goes to the caller's own tenant.
    assert client.get("/ui/").headers["Location"].endswith("/ui/tenants/acme")


def test_the_team_page_shows_timelines_signals_and_their_reasons(client, tokens, acme
                                                                ) -> None:
    # eng03, who works late in the last week, is in team beta: its signals are there.
    sign_in(client, tokens("acme", *ALL_READ))
    page = html(client, "/ui/tenants/acme/teams/beta")
    assert "<svg" in page and "<polyline" in page and 'class="mark"' in page
    assert "6 active people" in page
    raised = [s for s in stored_signals("acme")
              if s.team_id == "beta" and s.actor_scope in ("team", "actor")]
    assert {s.actor_scope for s in raised} == {"team", "actor"}, raised
    for sig in raised:
        assert f'id="signal-{sig.signal_id}"' in page
        assert _escaped(sig.reason) in page
        assert f'href="#signal-{sig.signal_id}"' in page  # marked on the timeline
    assert "burnout risk" in page and "Confidence" in page and " events from " in page
    # A team reader sees the team's own signal, not its members'.
    sign_in(client, tokens("acme", *TEAM_READ))
    page = html(client, "/ui/tenants/acme/teams/beta")
    for sig in raised:
        assert (f'id="signal-{sig.signal_id}"' in page) == (sig.actor_scope == "team")


def _escaped(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _team_reader_pages(client: Any) -> list[str]:
    return [html(client, "/ui/tenants/acme"),
            html(client, "/ui/tenants/acme/teams/alpha"),
            html(client, "/ui/tenants/acme/teams/beta"),
            html(client, "/ui/tenants/acme/teams/tiny", 404),
            html(client, "/ui/tenants/acme/teams/nobody", 404)]


def test_a_reader_without_ubi_read_actor_sees_no_actor_id_or_pseudonym(client, tokens,
                                                                       settings, acme
                                                                       ) -> None:
    sign_in(client, tokens("acme", *TEAM_READ))
    alias = Pseudonymiser(settings.pseudonym_secret)
    with session_factory()() as s:
        stored: set[str] = set(s.execute(sa.text(
            "SELECT DISTINCT actor_id FROM daily_rollups WHERE tenant_id = 'acme'")).scalars())
    assert len(stored) == 16
    assert stored == {alias.pseudonym("acme", f"eng{i:02d}") for i in range(16)}
    raw = {f"eng{i:02d}" for i in range(16)}
    for page in _team_reader_pages(client):
        assert not any(p in page or p[:12] in page for p in stored)
        assert not any(a in page for a in raw)
        assert not HEX64.search(page)
    # The actor page is not theirs.
    assert client.get("/ui/tenants/acme/actor?actor_id=eng03").status_code == 403


def test_a_team_under_min_team_size_renders_like_an_unknown_team(client, tokens, acme
                                                                ) -> None:
    sign_in(client, tokens("acme", *TEAM_READ))
    tiny = client.get("/ui/tenants/acme/teams/tiny")
    unknown = client.get("/ui/tenants/acme/teams/nobody")
    assert tiny.status_code == unknown.status_code == 404
    assert tiny.get_data() == unknown.get_data()
    assert b"Not enough people to show" in tiny.get_data()


def test_another_tenants_pages_are_forbidden(client, tokens, acme) -> None:
    sign_in(client, tokens("globex", *ALL_READ))
    for url in ("/ui/tenants/acme", "/ui/tenants/acme/teams/alpha",
                "/ui/tenants/acme/actor?actor_id=eng03"):
        resp = client.get(url)
        assert resp.status_code == 403, url
        assert "alpha" not in resp.get_data(as_text=True)


def test_without_a_session_the_pages_send_to_the_sign_in(client, tokens, acme) -> None:
    resp = client.get("/ui/tenants/acme/teams/alpha")
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/ui/sign-in?next=")
    client.set_cookie("ubi_session", "not-a-token", path="/ui")
    resp = client.get("/ui/tenants/acme")
    assert resp.status_code == 303 and "problem=" in resp.headers["Location"]
    # A token the API would refuse is refused here too (wrong signature).
    forged = tokens("acme", *ALL_READ)[:-4] + "AAAA"
    assert "problem=" in client.get(f"/ui/sign-in?token={forged}").headers["Location"]


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(
        client, tokens, acme) -> None:
    token = tokens("acme", *TEAM_READ)
    local = client.get(f"/ui/sign-in?token={token}").headers.getlist("Set-Cookie")
    cookie = next(c for c in local if c.startswith("ubi_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http on localhost: development
    for base in ("https://ubi.example.com", "http://ubi.example.com"):
        resp = client.get(f"/ui/sign-in?token={token}", base_url=base)
        cookie = next(c for c in resp.headers.getlist("Set-Cookie")
                      if c.startswith("ubi_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie, base


def test_the_sign_in_form_needs_its_csrf_token(client, tokens, acme) -> None:
    token = tokens("acme", *TEAM_READ)
    form = html(client, "/ui/sign-in")
    refused = client.post("/ui/sign-in", data={"token": token})
    assert refused.status_code == 403
    resp = client.post("/ui/sign-in", data={"token": token, "csrf_token": csrf(form)})
    assert resp.status_code == 303
    assert html(client, "/ui/tenants/acme").count("Teams") >= 1


def test_a_post_without_the_csrf_token_is_refused(client, tokens, acme) -> None:
    sign_in(client, tokens("acme", *ALL_READ))
    sig = next(s for s in stored_signals("acme") if s.status == "active")
    url = f"/ui/signals/{sig.signal_id}/feedback"
    assert client.post(url, data={"verdict": "useful"}).status_code == 403
    assert client.post(url, data={"verdict": "useful", "csrf_token": "0" * 64}
                       ).status_code == 403
    assert client.post("/ui/sign-out", data={}).status_code == 403
    with session_factory()() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(SignalFeedback)
                         ).scalar_one() == 0
    # Another session's token is not this one's.
    page = html(client, "/ui/tenants/acme")
    sign_in(client, tokens("acme", *ALL_READ, sub="someone-else"))
    assert client.post(url, data={"verdict": "useful", "csrf_token": csrf(page)}
                       ).status_code == 403


def test_feedback_from_the_page_is_stored_and_shown_at_once(client, tokens, acme) -> None:
    sign_in(client, tokens("acme", *ALL_READ, sub="lead-1"))
    page = html(client, "/ui/tenants/acme/teams/beta")
    sig_id = re.findall(r'<article class="signal [^"]*" id="signal-([^"]+)"', page)[0]
    resp = client.post(f"/ui/signals/{sig_id}/feedback", data={
        "verdict": "false_positive", "csrf_token": csrf(page),
        "next": "/ui/tenants/acme/teams/beta"})
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location == (f"/ui/tenants/acme/teams/beta?verdict=false_positive"
                        f"#signal-{sig_id}")
    with session_factory()() as s:
        rows = s.execute(sa.select(SignalFeedback)).scalars().all()
        assert [(r.signal_id, r.verdict, r.submitted_by, r.tenant_id) for r in rows] == [
            (sig_id, "false_positive", "lead-1", "acme")]
    shown = html(client, location.split("#")[0])
    assert "Feedback stored: false positive" in shown
    card = shown[shown.index(f'id="signal-{sig_id}"'):]
    assert "Your verdict: <strong>False positive</strong>" in card[:card.index("</article>")]
    # An outside address in `next` is not followed.
    resp = client.post(f"/ui/signals/{sig_id}/feedback", data={
        "verdict": "useful", "csrf_token": csrf(page), "next": "https://evil.example/ui/"})
    assert resp.headers["Location"].startswith("/ui/?verdict=useful")
    with session_factory()() as s:
        s.execute(sa.delete(SignalFeedback))
        s.commit()


def test_the_actor_page_is_for_actor_readers_of_tenants_that_allow_it(client, tokens, acme
                                                                     ) -> None:
    sign_in(client, tokens("acme", *ALL_READ))
    page = html(client, "/ui/tenants/acme/actor?actor_id=eng03")
    assert "Actor eng03" in page and "burnout risk" in page
    assert html(client, "/ui/tenants/acme/actor?actor_id=nobody", 404)


def test_the_pages_are_not_in_the_openapi_document(client, acme) -> None:
    spec = client.get("/v1/ubi/openapi.json").json
    assert not [p for p in spec["paths"] if "/ui" in p]
    assert client.get("/ui/static/ubi.css").status_code == 200
