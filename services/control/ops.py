"""The ops page: what `sluice status` says, for the apps of a logged-in user's organizations.

`/ops` is server-rendered HTML that polls `/ops/status.json` every few seconds. Fleet facts (SQS
depth, live workers, the drain's lag) are the same for everyone; every per-app figure (events
stored, reports, exports, pipelines) counts only the user's apps. The session is the Data Cortex
session key cookie that `POST /api/1/login` sets; without a live one, `/ops` redirects to
`/ops/login` (a page that starts the mail login) and `/ops/status.json` answers 403 in the Data
Cortex error shape, as `/api/1/*` does.
"""

from botocore.exceptions import BotoCoreError, ClientError
from flask import Blueprint, current_app, jsonify, redirect, render_template, url_for

from services import aws, fleet, status, tenancy
from services.api_errors import ApiError, use_shape
from services.control.auth import session_user
from services.openapi import JSON, documented
from services.web import database, settings
from shared.errors import simple_error

bp = Blueprint(
    "ops", __name__, template_folder="templates", static_folder="static", static_url_path="/ops/static"
)
use_shape(bp, simple_error)

REFRESH_SECONDS = 5
_HTML_PAGE = {"text/html": {"type": "string"}}
_SESSION = [{"sessionCookie": []}]
# The page loads only its own scripts and styles: nothing inline, nothing from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}


@bp.get("/ops")
@documented(
    "The ops page (HTML) for the logged-in user's apps",
    answers={200: ("The HTML page.", _HTML_PAGE), 302: ("Not logged in: to /ops/login.", None)},
    security=[],
)
def page():
    user_id = session_user()
    if user_id is None:
        return redirect(url_for("ops.login"))
    facts = _facts(user_id)
    return render_template("ops.html", facts=facts, refresh_ms=REFRESH_SECONDS * 1000), 200, PAGE_HEADERS


@bp.get("/ops/login")
@documented("A page that starts the mail login", answers={200: ("The HTML page.", _HTML_PAGE)}, security=[])
def login():
    return render_template("ops_login.html"), 200, PAGE_HEADERS


@bp.get("/ops/status.json")
@documented(
    "What the ops page shows: fleet facts and the figures of the user's apps",
    answers={200: ("Status.", {JSON: {"type": "object"}})},
    errors=(403,),
    security=_SESSION,
)
def status_json():
    user_id = session_user()
    if user_id is None:
        raise ApiError(403, "FORBIDDEN", "Not logged in.")
    return jsonify(_facts(user_id)), 200, {"Cache-Control": "no-store"}


@bp.app_template_filter("ops_format")
def ops_format(value, kind: str = "int") -> str:
    """A figure as the page shows it; static/ops.js formats the refreshed ones the same way."""
    if value is None:
        return "–"
    if kind == "seconds":
        return f"{value:.1f} s"
    if kind == "rate":
        return f"{value:.1f}"
    return str(value)


def _facts(user_id: int) -> dict:
    with database().connection() as conn:
        profile = tenancy.user_profile(conn, user_id) or {}
        apps = tenancy.user_apps(conn, user_id)
        ids = [a["app_id"] for a in apps]
        found_pipelines = status.pipelines(conn, ids)
        minutes = status.stored_per_minute(conn, ids)
        facts = {
            "user": {"email": profile.get("email"), "orgs": [o["name"] for o in profile.get("org_list", [])]},
            "apps": apps,
            "fleet": _fleet(conn),
            "stored": {
                "per_second": status.stored_per_second(conn, ids),
                "last_hour": sum(m["stored"] for m in minutes),
                "per_minute": minutes,
            },
            "render_jobs": status.render_jobs(conn, ids),
            "recent_jobs": status.recent_jobs(conn, ids),
            "oldest_unfinished_export": status.oldest_unfinished_export(conn, ids),
            "pipelines": found_pipelines,
            "pipelines_by_state": status.pipelines_by_state(found_pipelines),
        }
    return facts


def _fleet(conn) -> dict:
    """Queue depth, workers and the drain's lag: the same for every organization."""
    facts: dict = {"errors": {}, "drain": fleet.live(conn)}
    try:
        facts.update(status.queues(settings(), _sqs()))
    except (BotoCoreError, ClientError) as exc:
        current_app.logger.warning("ops page: SQS not answering: %s", exc)
        facts["errors"]["sqs"] = "SQS is not answering"  # the page shows no AWS details
    facts["attention"] = status.attention(facts, status.DEFAULT_MAX_LAG_SECONDS)
    return facts


def _sqs():
    if "SQS" not in current_app.config:
        # Short timeouts and no retries: the page polls, and must not hang on an SQS outage.
        current_app.config["SQS"] = aws.client(
            settings(), "sqs", connect_timeout=2, read_timeout=3, retries={"max_attempts": 1}
        )
    return current_app.config["SQS"]
