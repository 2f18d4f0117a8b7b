"""Reports (Barchart, reference 000): POST /reports, GET /reports/{source}/availability,
GET /reports/{source}, answered in Barchart's error shape."""

from flask import Blueprint, g, jsonify

from services import render_jobs
from services.api_errors import ApiError, use_shape, validated
from services.control.auth import BASIC_CHALLENGE, basic_app
from services.control.rendering import enqueue, presigned_link, refuse_when_busy
from services.openapi import documented
from services.request_body import has_body, read_json
from services.web import database, settings
from shared.errors import barchart_error, simple_error
from shared.schemas.reports import (
    JobSchema,
    ReportLinkSchema,
    ReportRequestSchema,
    job_body,
    load_report_request,
    parse_source,
)

bp = Blueprint("reports", __name__)
# Barchart's document has no error for an outage: a database outage answers in the generic shape.
use_shape(bp, barchart_error, outage_shape=simple_error)


@bp.before_request
def authenticate():
    g.app_id = basic_app()
    if g.app_id is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "Valid HTTP Basic credentials (app id, API key) are required.",
            BASIC_CHALLENGE,
        )


def _job(job: render_jobs.Job) -> dict:
    return job_body(job.id, job.status, job.filter, job.created_at, job.rows_written)


def _find(source: str) -> render_jobs.Job:
    """The caller's report named by source; 404 for a malformed, unknown or another app's source."""
    job_id = parse_source(source)
    job = None
    if job_id is not None:
        with database().connection() as conn:
            job = render_jobs.get(conn, g.app_id, "report", job_id)
    if job is None:
        raise ApiError(404, "NOT_FOUND", f"No report {source!r}.")
    return job


_BASIC = [{"basic": []}]
_JOB = {200: ("The job.", JobSchema)}


@bp.post("/reports")
@documented(
    "Start a report (Barchart)",
    description="The filter's customer and product are required; start (inclusive) and end "
    "(exclusive) are epoch milliseconds, numbers or numeric strings.",
    body=ReportRequestSchema,
    answers=_JOB,
    errors=(400, 401, 415, 429, 503),
    security=_BASIC,
)
def start_report():
    # No body at all is a request without a filter: the answer names the filter's missing parts.
    body = read_json(settings().max_body_bytes) if has_body() else {}
    report_filter = validated(load_report_request, body, "INVALID_FILTER")
    with database().connection() as conn:
        refuse_when_busy(conn, g.app_id)
        job = render_jobs.create(conn, g.app_id, "report", "Event", report_filter)
    enqueue(job.id)
    return jsonify(_job(job))


@bp.get("/reports/<source>/availability")
@documented("Check a report's status", answers=_JOB, errors=(401, 404, 429, 503), security=_BASIC)
def report_availability(source: str):
    return jsonify(_job(_find(source)))


@bp.get("/reports/<source>")
@documented(
    "Download a report: a presigned link to its CSV file",
    answers={200: ("A new link on every call.", ReportLinkSchema)},
    errors={401: "", 404: "", 409: "The report is not COMPLETE (REPORT_NOT_READY).", 429: "", 503: ""},
    security=_BASIC,
)
def download_report(source: str):
    job = _find(source)
    if job.status != "done" or not job.files:
        raise ApiError(
            409,
            "REPORT_NOT_READY",
            f"The report is {_job(job)['status']}; a link exists once availability says COMPLETE.",
        )
    return jsonify(link=presigned_link(job.files[0].s3_key))
