"""Sign-in for the pages (``ubi/web/pages.py``): the API's JWT, kept in a cookie.

The token is verified by the API's verifier (``auth.verifier``) on every request, so the pages
accept exactly what the API accepts and nothing lives on the server. The cookie is HttpOnly,
SameSite=Strict, and Secure unless the page is served over plain http on the loopback host
(development). Every POST carries a CSRF token: an HMAC of the session's token (or, before
sign-in, of a random nonce kept in a cookie of its own) under a key derived from the
deployment's pseudonym secret, so it needs no server-side state and dies with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from flask import abort, request
from werkzeug.wrappers import Response

from ubi.settings import Settings
from ubi.web.auth import AuthError, Principal, verifier

SESSION_COOKIE = "ubi_session"
#: The sign-in form's nonce: what its CSRF token is bound to before there is a session.
SIGN_IN_COOKIE = "ubi_sign_in"
CSRF_FIELD = "csrf_token"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _key(settings: Settings) -> bytes:
    # A key of its own, derived from a secret every deployment has (never the secret itself).
    return hmac.new(settings.pseudonym_secret, b"ubi pages csrf", hashlib.sha256).digest()


def csrf_token(settings: Settings, bound_to: str) -> str:
    """The CSRF token of a session (``bound_to``: its JWT, or the sign-in nonce)."""
    # base64, not hex: nothing on a page may look like a pseudonym (64 hex digits)
    digest = hmac.new(_key(settings), bound_to.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_csrf(settings: Settings, bound_to: str | None) -> None:
    """403 unless the POSTed form carries the CSRF token of ``bound_to``."""
    given = request.form.get(CSRF_FIELD, "")
    if not bound_to or not given or not hmac.compare_digest(
            given, csrf_token(settings, bound_to)):
        abort(403, description="the form's CSRF token is missing or does not match this "
                               "session: reload the page and try again")


def session_token() -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def signed_in(settings: Settings) -> tuple[Principal | None, str | None]:
    """The caller the session cookie vouches for, or why there is none."""
    token = session_token()
    if token is None:
        return None, None
    try:
        return verifier(settings).verify(token), None
    except AuthError as exc:
        return None, exc.message


def secure_cookies() -> bool:
    """Secure cookies, except for plain http on the loopback host (development)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return request.is_secure or host not in _LOOPBACK


def _cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/ui", secure=secure_cookies(),
                        httponly=True, samesite="Strict")


def start_session(response: Response, token: str, principal: Principal) -> None:
    """Keep ``token`` in the session cookie for as long as it is valid."""
    exp = principal.claims.get("exp")
    iat = principal.claims.get("iat")
    lifetime = int(exp) - int(iat) if isinstance(exp, int) and isinstance(iat, int) else None
    _cookie(response, SESSION_COOKIE, token, max_age=lifetime)
    response.delete_cookie(SIGN_IN_COOKIE, path="/ui")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui", secure=secure_cookies(), httponly=True,
                           samesite="Strict")


def sign_in_nonce() -> str:
    """The sign-in form's nonce: the browser's, or a new one (``keep_sign_in_nonce``)."""
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)


def keep_sign_in_nonce(response: Response, nonce: str) -> None:
    if request.cookies.get(SIGN_IN_COOKIE) != nonce:
        _cookie(response, SIGN_IN_COOKIE, nonce, max_age=3600)
