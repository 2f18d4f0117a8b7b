"""Accounts (Data Cortex, reference 003, /api/1/*): email login, the logged-in user, and the apps
and keys of the user's organizations. 403 whenever the caller is not logged in or not a member of
the org that owns the thing, whether or not that thing exists.

Mailed links point only where the operator said: SLUICE_PUBLIC_URL, or else the request's Host if
SLUICE_ALLOWED_HOSTS names it; a login naming any other Host is refused before anything is sent.
"""

from flask import Blueprint, current_app, jsonify, render_template_string, request, url_for

from services import tenancy
from services.api_errors import ApiError, use_shape, validated
from services.control import mail, ratelimit, sessions
from services.control.auth import SESSION_COOKIE, session_key, session_user
from services.openapi import FORM, JSON, documented
from services.web import database, settings
from shared.enums import KeyScope
from shared.errors import SimpleErrorSchema, simple_error
from shared.schemas.accounts import (
    MAX_NAME,
    AppCreatedSchema,
    AppDeletedSchema,
    AppListSchema,
    AppQuerySchema,
    CreateAppSchema,
    KeyCreatedSchema,
    KeyRevokedSchema,
    LoggedOutSchema,
    LoginAnswerSchema,
    LoginSchema,
    ManualCodeSchema,
    NewKeySchema,
    SessionSchema,
    UserSchema,
)
from shared.storage_limits import BIGINT_MAX, storable

bp = Blueprint("accounts", __name__, url_prefix="/api/1")
use_shape(bp, simple_error)

_SESSION = [{"sessionCookie": []}]
_HTML = "text/html"
_PAGE = {_HTML: {"type": "string"}}


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


def _param(name: str):
    """A parameter from the JSON body, the form body or the query string, in that order."""
    body = request.get_json(silent=True) if request.is_json else None
    if isinstance(body, dict) and name in body:
        return body[name]
    return request.form.get(name, request.args.get(name))


def _id_param(name: str) -> int:
    """Data Cortex ids are numbers; the document sends them as strings too."""
    value = _param(name)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BIGINT_MAX:
        raise _bad_request(f"{name}: a numeric id is required")
    return value


def _require_user() -> int:
    user_id = session_user()
    if user_id is None:
        raise _forbidden("Not logged in.")
    return user_id


def _require_app(user_id: int, app_id: int, conn, action: str) -> None:
    if app_id > BIGINT_MAX or not tenancy.user_may_manage_app(conn, user_id, app_id):
        raise _forbidden(f"Not allowed to {action} that application.")


def host_allowed(host: str, allowed: str) -> bool:
    """Whether a Host header (`name` or `name:port`) is on the comma-separated allow-list, whose
    entries are a name (any port) or a name:port."""
    host = host.strip().lower()
    name = host.rsplit(":", 1)[0] if host.rfind(":") > host.rfind("]") else host  # [::1]:8001
    return any(entry.strip() in (host, name) for entry in allowed.lower().split(",") if entry.strip())


def _link_base(config) -> str:
    """Where the mailed link points; 400 when the request names a Host the operator did not."""
    if config.public_url:
        return config.public_url.rstrip("/")
    if not host_allowed(request.host, config.allowed_hosts):
        raise _bad_request(
            f"Host {request.host!r} is not one this server serves "
            "(the operator sets SLUICE_PUBLIC_URL or SLUICE_ALLOWED_HOSTS)."
        )
    return request.host_url.rstrip("/")


@bp.post("/login")
@documented(
    "Start an email login (Data Cortex)",
    description="Mails a verification link to the address; the session key works once the link is "
    "opened and the manual code typed there. email may also be a query parameter.",
    body=LoginSchema,
    media=(JSON, FORM),
    answers={200: ("The login started (the same for an address no account uses).", LoginAnswerSchema)},
    errors={400: "", 429: "Too many logins for this address or from this client.", 503: ""},
    security=[],
)
def login():
    config = settings()
    link_base = _link_base(config)
    email = _param("email")
    email = validated(LoginSchema().load, {} if email is None else {"email": email}, "BAD_REQUEST")["email"]
    email = email.strip().lower()
    ratelimit.count_login(email)
    try:
        # The mail goes out inside the transaction: if it cannot, the login is not kept either.
        with database().connection() as conn:
            started = sessions.start_login(conn, email, config.login_ttl_seconds)
            mail.send(config, email, "Your Sluice sign-in", _login_mail(started, config, link_base))
    except mail.MailError as exc:
        current_app.logger.error("login mail to %s not sent: %s", email, exc)
        raise ApiError(
            503,
            "SERVICE_UNAVAILABLE",
            "The sign-in mail could not be sent; try again later.",
            {"Retry-After": "30"},
        ) from None
    response = jsonify(result="new_browser", session_key=started.session_key, manual_code=started.manual_code)
    # Strict: no other site can make a browser send it, not even through a link (GET /app creates).
    # Secure when this request came over TLS (as the trusted proxies say) or the public URL is https.
    response.set_cookie(
        SESSION_COOKIE,
        started.session_key,
        max_age=config.session_max_age_seconds,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure or link_base.startswith("https://"),
    )
    return response


def _login_mail(started: sessions.Login, config, link_base: str) -> str:
    if started.verify_token is None:
        # Same mail flow for unknown addresses, so the answer and its timing reveal nothing.
        return (
            "Someone asked to sign in to Sluice with this address, but no account uses it.\n"
            "If it was you, ask your organization's administrator to add you.\n"
        )
    link = link_base + url_for("accounts.verify", token=started.verify_token)
    return (
        f"To finish signing in to Sluice, open this link and type the manual code you were given:\n\n"
        f"{link}\n\nThe link and the code expire in {config.login_ttl_seconds // 60} minutes.\n"
        f"If you did not ask to sign in, ignore this mail: nobody can sign in without the code.\n"
    )


VERIFY_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>Sluice sign-in</h1>
<p>{{ message }}</p>
{% if ask %}
<form method="post">
  <label>Manual code
    <input name="manual_code" autocomplete="one-time-code" inputmode="numeric" required autofocus></label>
  <button type="submit">Verify</button>
</form>
{% endif %}
</body></html>"""

MESSAGES = {
    sessions.PENDING: (200, "Type the manual code you were shown when you asked to sign in."),
    sessions.VERIFIED: (200, "You are signed in. You can close this page."),
    sessions.WRONG_CODE: (400, "That code is not right. Try again."),
    sessions.LOCKED: (410, "Too many wrong codes: this sign-in is locked. Ask for a new one."),
    sessions.EXPIRED: (410, "This sign-in link has expired. Ask for a new one."),
    sessions.USED: (410, "This sign-in link was already used."),
    sessions.UNKNOWN: (404, "This sign-in link is not valid."),
}


_VERIFY_PAGES = {
    # A token no route matches (one holding a "/") gets the JSON error instead of the page.
    404: ("This sign-in link is not valid (an HTML page).", {**_PAGE, JSON: SimpleErrorSchema}),
    410: ("Expired, locked or already used (an HTML page).", _PAGE),
}


@bp.route("/verify/<token>", methods=["GET", "POST"])
@documented(
    "The mailed link: a page asking for the manual code",
    method="get",
    answers={200: ("The HTML page.", _PAGE), **_VERIFY_PAGES},
    errors=(429, 503),
    security=[],
)
@documented(
    "Enter the manual code (the page's form)",
    method="post",
    body=ManualCodeSchema,
    media=(FORM,),
    answers={
        200: ("Signed in (an HTML page).", _PAGE),
        400: ("Wrong code (an HTML page).", _PAGE),
        **_VERIFY_PAGES,
    },
    errors=(429, 503),
    security=[],
)
def verify(token: str):
    config = settings()
    with database().connection() as conn:
        if request.method == "GET":
            state = sessions.login_state(conn, token, config.login_max_code_attempts)
        else:
            state = sessions.verify(
                conn,
                token,
                request.form.get("manual_code", ""),
                config.login_max_code_attempts,
                config.session_max_age_seconds,
            )
    if state in (sessions.WRONG_CODE, sessions.LOCKED, sessions.UNKNOWN):
        ratelimit.record_auth_failure()
    status, message = MESSAGES[state]
    page = render_template_string(
        VERIFY_PAGE, message=message, ask=state in (sessions.PENDING, sessions.WRONG_CODE)
    )
    # The page holds a one-time link: keep it out of caches and other sites' Referer headers.
    return page, status, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


_SESSION_ERRORS = {403: "", 429: "", 503: ""}


@bp.post("/logout")
@documented(
    "Disable the session key",
    body=SessionSchema,
    body_required=False,
    media=(JSON, FORM),
    answers={200: ("Logged out.", LoggedOutSchema)},
    errors=_SESSION_ERRORS,
    security=_SESSION,
)
def logout():
    _require_user()  # counts wrong keys like every other credential check
    with database().connection() as conn:
        sessions.logout(conn, session_key())
    response = jsonify(result="logged_out")
    response.delete_cookie(SESSION_COOKIE)
    return response


@bp.get("/user")
@documented(
    "The logged-in user and their organizations",
    answers={200: ("The user.", UserSchema)},
    errors=_SESSION_ERRORS,
    security=_SESSION,
)
def user():
    user_id = _require_user()
    with database().connection() as conn:
        profile = tenancy.user_profile(conn, user_id)
    return jsonify(profile)


@bp.get("/app")
@documented(
    "List an organization's apps, or create one when app_name is given",
    query=AppQuerySchema,
    answers={200: ("app_list, or app_id of the app created.", {"oneOf": [AppListSchema, AppCreatedSchema]})},
    errors={400: "", **_SESSION_ERRORS},
    security=_SESSION,
)
def apps():
    """List the org's apps; with app_name, create one (the document's GET form)."""
    user_id = _require_user()
    org_id = _id_param("org_id")
    if _param("app_name") is not None:
        return _create_app(user_id, org_id)
    with database().connection() as conn:
        if not tenancy.is_member(conn, user_id, org_id):
            raise _forbidden("Not allowed to list that organization's applications.")
        found = tenancy.list_apps(conn, org_id)
    return jsonify(app_list=[_app_json(app) for app in found])


@bp.post("/app")
@documented(
    "Create an app",
    body=CreateAppSchema,
    media=(JSON, FORM),
    answers={200: ("The app created.", AppCreatedSchema)},
    errors={400: "", **_SESSION_ERRORS},
    security=_SESSION,
)
def create_app():
    return _create_app(_require_user(), _id_param("org_id"))


def _create_app(user_id: int, org_id: int):
    name = _param("app_name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not storable(name):
        raise _bad_request(f"app_name: a name of 1 to {MAX_NAME} characters (no NUL) is required")
    with database().connection() as conn:
        if not tenancy.is_member(conn, user_id, org_id):
            raise _forbidden("Not allowed to add an application to that organization.")
        app_id = tenancy.create_app(conn, org_id, name.strip())
    return jsonify(app_id=app_id)


def _app_json(app: dict) -> dict:
    # The document's api_key_list is a list of strings; we never hold the secrets, so each is the
    # key's prefix. api_keys adds the ids that revoking needs.
    return {
        "app_id": app["app_id"],
        "name": app["name"],
        "api_key_list": [key["prefix"] + "..." for key in app["keys"]],
        "api_keys": [
            {
                "key_id": key["key_id"],
                "prefix": key["prefix"],
                "scope": key["scope"],
                "created_at": key["created_at"].isoformat(),
            }
            for key in app["keys"]
        ],
    }


@bp.delete("/app/<int:app_id>")
@documented(
    "Delete an app and its keys",
    answers={200: ("Deleted.", AppDeletedSchema)},
    errors=_SESSION_ERRORS,
    security=_SESSION,
)
def delete_app(app_id: int):
    user_id = _require_user()
    with database().connection() as conn:
        _require_app(user_id, app_id, conn, "delete")
        tenancy.delete_app(conn, app_id)
    return jsonify(result="deleted", app_id=app_id)


def _scope_param() -> KeyScope:
    """The scope a new key asks for; ingest unless it says admin (what leaks should do least)."""
    scope = _param("scope")
    if scope is None:
        return KeyScope.INGEST
    if scope not in [s.value for s in KeyScope]:
        raise _bad_request("scope: 'ingest' (posts events only) or 'admin' (also the control API)")
    return KeyScope(scope)


@bp.post("/app/<int:app_id>/key")
@documented(
    "Create an API key (its secret is shown once)",
    body=NewKeySchema,
    body_required=False,
    media=(JSON, FORM),
    answers={200: ("The key.", KeyCreatedSchema)},
    errors={400: "scope is neither ingest nor admin.", **_SESSION_ERRORS},
    security=_SESSION,
)
def create_key(app_id: int):
    user_id = _require_user()
    scope = _scope_param()
    with database().connection() as conn:
        _require_app(user_id, app_id, conn, "add a key to")
        key_id, key = tenancy.create_key(conn, app_id, scope)
    return jsonify(app_id=app_id, key_id=key_id, api_key=key, prefix=key[:10], scope=scope.value)


@bp.delete("/app/<int:app_id>/key/<int:key_id>")
@documented(
    "Revoke an API key",
    answers={200: ("Revoked.", KeyRevokedSchema)},
    errors={**_SESSION_ERRORS, 404: "That app has no such live key."},
    security=_SESSION,
)
def revoke_key(app_id: int, key_id: int):
    user_id = _require_user()
    with database().connection() as conn:
        _require_app(user_id, app_id, conn, "revoke a key of")
        if key_id > BIGINT_MAX or not tenancy.revoke_key(conn, app_id, key_id):
            raise ApiError(404, "NOT_FOUND", "That application has no such live key.")
    return jsonify(result="revoked", app_id=app_id, key_id=key_id)
