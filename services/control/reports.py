"""Barchart reports: POST /reports, GET /reports/{source}/availability, GET /reports/{source}."""
from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError

from services.control.auth import basic_app
from services.control.render_jobs import MAX_BODY_BYTES, enqueue, presigned_link
from services.ingest.body import BadBody, BodyTooLarge, read_json
from services.worker import jobs
from shared.errors import barchart_error, flatten_marshmallow
from shared.schemas.reports import job_body, load_report_request, parse_source

OPENAPI_PATHS = {
    "/reports": {"post": {"summary": "Start report (Barchart)", "security": [{"basic": []}],
                          "responses": {"200": {"description": "Job"}, "400": {"description": "Bad filter"}}}},
    "/reports/{source}/availability": {"get": {"summary": "Check report status", "security": [{"basic": []}],
                                               "responses": {"200": {"description": "Job"}}}},
    "/reports/{source}": {"get": {"summary": "Download report: a presigned link", "security": [{"basic": []}],
                                  "responses": {"200": {"description": "{link}"},
                                                "409": {"description": "Not COMPLETE"}}}},
}

bp = Blueprint("reports", __name__)


def error(status: int, code: str, message: str, **headers):
    return jsonify(barchart_error(code, message)), status, headers


@bp.before_request
def authenticate():
    g.app_id = basic_app()
    if g.app_id is None:
        return error(401, "UNAUTHORIZED", "Valid HTTP Basic credentials (app id, API key) are required.",
                     **{"WWW-Authenticate": 'Basic realm="sluice"'})


def _job(job: jobs.Job) -> dict:
    return job_body(job.id, job.status, job.filter, job.created_at, job.rows_written)


def _find(source: str) -> jobs.Job | None:
    """The caller's report named by source; None for a malformed, unknown or another app's source."""
    job_id = parse_source(source)
    if job_id is None:
        return None
    with current_app.config["DB"].connection() as conn:
        return jobs.get(conn, g.app_id, "report", job_id)


def _not_found(source: str):
    return error(404, "NOT_FOUND", f"No report {source!r}.")


@bp.post("/reports")
def start_report():
    try:
        # No body at all is a request without a filter: every event of the app.
        has_body = request.content_length or request.headers.get("Transfer-Encoding")
        body = read_json(MAX_BODY_BYTES) if has_body else {}
        report_filter = load_report_request(body)
    except BodyTooLarge:
        return error(413, "PAYLOAD_TOO_LARGE", f"Body is over {MAX_BODY_BYTES} bytes.")
    except BadBody as exc:
        return error(400, "MALFORMED_JSON", str(exc))
    except ValidationError as exc:
        field, message = flatten_marshmallow(exc.messages)[0]
        return error(400, "INVALID_FILTER", f"{field}: {message}")
    with current_app.config["DB"].connection() as conn:
        job = jobs.create(conn, g.app_id, "report", "Event", report_filter)
    enqueue(job.id)
    return jsonify(_job(job))


@bp.get("/reports/<source>/availability")
def report_availability(source: str):
    job = _find(source)
    return jsonify(_job(job)) if job else _not_found(source)


@bp.get("/reports/<source>")
def download_report(source: str):
    job = _find(source)
    if job is None:
        return _not_found(source)
    body = _job(job)
    if job.status != "done" or not job.files:
        return error(409, "REPORT_NOT_READY", f"The report is {body['status']}; "
                     "a link exists once availability says COMPLETE.")
    return jsonify(link=presigned_link(job.files[0].s3_key))
