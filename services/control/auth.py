"""Resolving a control API caller to an app or a user: every wire form maps onto the same
API keys (Mews AccessToken, HTTP Basic) and logged-in users (Data Cortex session key).

Only admin keys drive the control API; an ingest key is answered 401 INSUFFICIENT_SCOPE.
A credential is always checked first, so a valid one works whoever else guessed from the same
address; each wrong one is counted, and past the limit it is answered 429
(services/control/ratelimit.py).
"""

from flask import request

from services.api_errors import ApiError
from services.control import ratelimit, sessions
from services.tenancy import live_key, user_may_manage_app
from services.web import database
from shared.enums import KeyScope

SESSION_COOKIE = "session_key"
# With a session key, the app a request acts for is named here (or by the app_id query parameter).
APP_HEADER = "X-Sluice-App"
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="sluice"'}

# caller_app's credentials as the OpenAPI document shows them.
CALLER_SECURITY = [{"basic": []}, {"sessionCookie": []}]
CALLER_HEADERS = [
    {
        "name": APP_HEADER,
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "description": "with a session key: the app to act for (or the app_id query parameter)",
    }
]


def app_for_token(key: str | None, challenge: dict | None = None) -> int | None:
    """The app of a live admin key (Mews AccessToken, the password of HTTP Basic), else None.

    An ingest key is a 401 of its own (with `challenge` as headers), saying which key to use.
    Keys are looked up by their sha256, so comparing never leaks the secret through timing.
    """
    if not key:
        return None
    with database().connection() as conn:
        found = live_key(conn, key)
    if found is None:
        ratelimit.record_auth_failure()
        return None
    app_id, scope = found
    if scope != KeyScope.ADMIN:
        raise ApiError(
            401,
            "INSUFFICIENT_SCOPE",
            "This is an ingest key: it only posts events. The control API takes an admin key.",
            challenge,
        )
    return app_id


def basic_app() -> int | None:
    """HTTP Basic with the app id as user name and one of its admin keys as password, else None."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        return None
    app_id = app_for_token(auth.password, BASIC_CHALLENGE)
    return app_id if app_id is not None and str(app_id) == auth.username else None


def session_key() -> str | None:
    """The session key of this request: in the body (JSON or form field `session_key`) or a cookie."""
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and isinstance(body.get("session_key"), str):
        return body["session_key"]
    return request.form.get("session_key") or request.cookies.get(SESSION_COOKIE) or None


def session_user() -> int | None:
    """The logged-in user (verified, not logged out, not expired) of this request, else None."""
    key = session_key()
    if not key:
        return None
    with database().connection() as conn:
        user_id = sessions.session_user(conn, key)
    if user_id is None:
        ratelimit.record_auth_failure()
    return user_id


def session_app() -> int | None:
    """The app a logged-in user acts for: one of its orgs' apps, named by X-Sluice-App or ?app_id=."""
    named = request.headers.get(APP_HEADER) or request.args.get("app_id") or ""
    if not (named.isascii() and named.isdigit()) or len(named) > 18:  # beyond bigint: no such app
        return None
    user_id = session_user()
    if user_id is None:
        return None
    with database().connection() as conn:
        return int(named) if user_may_manage_app(conn, user_id, int(named)) else None


def caller_app() -> int:
    """The app a connectors or pipelines request acts for, else 401.

    HTTP Basic (app id, admin key), as the reports take it; or a logged-in user's session key
    (cookie) naming one of its orgs' apps in the X-Sluice-App header.
    """
    app_id = basic_app() if request.authorization else session_app()
    if app_id is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "Valid HTTP Basic credentials (app id, admin key), or a session "
            f"key with the app named in {APP_HEADER}, are required.",
            BASIC_CHALLENGE,
        )
    return app_id
