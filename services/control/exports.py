"""Exports (Mews connector API, reference 002): POST /api/connector/v1/exports/add and
/api/connector/v1/exports/getAll.

The AccessToken is an app key and scopes everything; ClientToken and Client name the calling
integration and are recorded on the export.
"""

from datetime import UTC, datetime

from flask import Blueprint, jsonify

from services import render_jobs
from services.api_errors import ApiError, use_shape, validated
from services.control.auth import app_for_token
from services.control.rendering import enqueue, presigned_link, refuse_when_busy
from services.openapi import documented
from services.request_body import read_json
from services.web import database, settings
from shared.errors import simple_error
from shared.schemas.exports import (
    ExportAddedSchema,
    ExportsSchema,
    export_add_schema,
    export_body,
    export_get_all_schema,
    valid_ids,
)

bp = Blueprint("exports", __name__, url_prefix="/api/connector/v1/exports")
use_shape(bp, simple_error)


def _request(schema) -> tuple[int, dict]:
    """(app id, validated body); a missing or unknown AccessToken is 401, anything else wrong 400."""
    body = read_json(settings().max_body_bytes)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "body: Expected a JSON object.")
    token = body.get("AccessToken")
    app_id = app_for_token(token) if isinstance(token, str) else None
    if app_id is None:
        raise ApiError(401, "UNAUTHORIZED", "AccessToken: a valid access token (an app key) is required.")
    return app_id, validated(schema.load, body, "INVALID_REQUEST")


def _export(job: render_jobs.Job, now: datetime) -> dict:
    files = [(presigned_link(f.s3_key), f.size_bytes) for f in job.files]
    return export_body(job.id, job.status, job.entity_type, job.expires_at, files, job.rows_written, now)


# The AccessToken (an app key) travels in the body, so the document names no security scheme.
_ERRORS = {
    400: "",
    401: "AccessToken missing or not a live app key.",
    415: "",
    429: "",
    503: "",
}


@bp.post("/add")
@documented(
    "Add an export (Mews)",
    description="One Pending or Processing export per app and EntityType: another is 400 EXPORT_IN_PROGRESS.",
    body=export_add_schema,
    answers={200: ("The export, Pending.", ExportAddedSchema)},
    errors=_ERRORS,
    security=[],
)
def add_export():
    app_id, body = _request(export_add_schema)
    try:
        with database().connection() as conn:
            refuse_when_busy(conn, app_id)
            job = render_jobs.create(
                conn,
                app_id,
                "export",
                body["EntityType"],
                client_token=body["ClientToken"],
                client=body["Client"],
            )
    except render_jobs.OpenExportExists:
        raise ApiError(
            400,
            "EXPORT_IN_PROGRESS",
            f"An export of {body['EntityType']} is already Pending or Processing; wait for it to finish.",
        ) from None
    enqueue(job.id)
    return jsonify(Export=_export(job, datetime.now(UTC)))


@bp.post("/getAll")
@documented(
    "Get exports (Mews)",
    description="The caller's exports among ExportIds; ids that name none are left out.",
    body=export_get_all_schema,
    answers={200: ("The exports found.", ExportsSchema)},
    errors=_ERRORS,
    security=[],
)
def get_all_exports():
    app_id, body = _request(export_get_all_schema)
    with database().connection() as conn:
        found = render_jobs.get_many(conn, app_id, "export", valid_ids(body["ExportIds"]))
    now = datetime.now(UTC)
    return jsonify(Exports=[_export(job, now) for job in found])
