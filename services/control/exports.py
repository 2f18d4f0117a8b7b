"""Mews exports: POST /api/connector/v1/exports/add and /api/connector/v1/exports/getAll.

The AccessToken is an app key and scopes everything; ClientToken and Client name the calling
integration and are recorded on the export.
"""
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify
from marshmallow import ValidationError

from services.control.auth import app_for_token
from services.control.render_jobs import MAX_BODY_BYTES, enqueue, presigned_link
from services.ingest.body import BadBody, BodyTooLarge, read_json
from services.worker import jobs
from shared.errors import flatten_marshmallow, simple_error
from shared.schemas.mews import export_add_schema, export_body, export_get_all_schema, valid_ids

OPENAPI_PATHS = {
    "/api/connector/v1/exports/add": {"post": {"summary": "Add export (Mews)",
                                               "responses": {"200": {"description": "{Export}"}}}},
    "/api/connector/v1/exports/getAll": {"post": {"summary": "Get exports (Mews)",
                                                  "responses": {"200": {"description": "{Exports}"}}}},
}

bp = Blueprint("exports", __name__, url_prefix="/api/connector/v1/exports")


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@bp.errorhandler(Refused)
def refused(exc: Refused):
    return jsonify(simple_error(exc.code, exc.message)), exc.status


def _request(schema) -> tuple[int, dict]:
    """(app id, validated body); a missing or unknown AccessToken is 401, anything else wrong 400."""
    try:
        body = read_json(MAX_BODY_BYTES)
    except BodyTooLarge:
        raise Refused(413, "PAYLOAD_TOO_LARGE", f"Body is over {MAX_BODY_BYTES} bytes.") from None
    except BadBody as exc:
        raise Refused(400, "MALFORMED_JSON", str(exc)) from None
    if not isinstance(body, dict):
        raise Refused(400, "INVALID_REQUEST", "body: Expected a JSON object.")
    token = body.get("AccessToken")
    app_id = app_for_token(token) if isinstance(token, str) else None
    if app_id is None:
        raise Refused(401, "UNAUTHORIZED", "AccessToken: a valid access token (an app key) is required.")
    try:
        return app_id, schema.load(body)
    except ValidationError as exc:
        field, message = flatten_marshmallow(exc.messages)[0]
        raise Refused(400, "INVALID_REQUEST", f"{field}: {message}") from None


def _export(job: jobs.Job, now: datetime) -> dict:
    files = [(presigned_link(f.s3_key), f.size_bytes) for f in job.files]
    return export_body(job.id, job.status, job.entity_type, job.expires_at, files, job.rows_written, now)


@bp.post("/add")
def add_export():
    app_id, body = _request(export_add_schema)
    try:
        with current_app.config["DB"].connection() as conn:
            job = jobs.create(conn, app_id, "export", body["EntityType"],
                              client_token=body["ClientToken"], client=body["Client"])
    except jobs.OpenExportExists:
        raise Refused(400, "EXPORT_IN_PROGRESS", f"An export of {body['EntityType']} is already "
                      "Pending or Processing; wait for it to finish.") from None
    enqueue(job.id)
    return jsonify(Export=_export(job, datetime.now(timezone.utc)))


@bp.post("/getAll")
def get_all_exports():
    app_id, body = _request(export_get_all_schema)
    with current_app.config["DB"].connection() as conn:
        found = jobs.get_many(conn, app_id, "export", valid_ids(body["ExportIds"]))
    now = datetime.now(timezone.utc)
    return jsonify(Exports=[_export(job, now) for job in found])
