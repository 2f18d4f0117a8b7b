"""Connectors (Formance, reference 004): the destinations pipelines deliver to, validated per driver."""

from flask import Blueprint, jsonify

from services import egress
from services.api_errors import ApiError, not_found, use_shape, validated
from services.control import pipeline_rows
from services.control.auth import caller_app
from services.control.cursor_pages import cursor_page
from services.request_body import read_json
from services.web import database, settings
from shared.errors import FORMANCE_CODES, formance_error
from shared.schemas.pipelines import load_connector, s3_authority

bp = Blueprint("connectors", __name__)
use_shape(bp, formance_error, FORMANCE_CODES)

LOOKUP_SECONDS = 2.0  # longest a create waits for the URL's host to resolve (the worker checks again)


@bp.get("/connectors")
def list_connectors():
    app_id = caller_app()
    with database().connection() as conn:
        return jsonify(cursor_page(conn, "connectors", app_id, pipeline_rows.connector_view))


@bp.post("/connectors")
def create_connector():
    app_id = caller_app()
    connector = validated(load_connector, read_json(settings().max_body_bytes), "VALIDATION")
    _check_destination(connector["driver"], connector["config"])
    with database().connection() as conn:
        row = pipeline_rows.create_connector(conn, app_id, connector["driver"], connector["config"])
    return jsonify(data=pipeline_rows.connector_view(row)), 201


def _check_destination(driver: str, config: dict) -> None:
    """400 for a destination connectors may not reach (services/egress.py)."""
    refused = None
    if driver == "http":
        reason = egress.url_refusal(egress.policy(settings()), config["url"], LOOKUP_SECONDS)
        refused = reason and f"config.url: {reason}"
    elif driver == "s3":
        reason = egress.bucket_refusal(settings(), config["bucket"], s3_authority(config))
        refused = reason and f"config.bucket: {reason}"
    if refused:
        raise ApiError(400, "VALIDATION", refused)


@bp.get("/connectors/<connector_id>")
def get_connector(connector_id):
    app_id = caller_app()
    row = None
    if (connector_id := pipeline_rows.parse_id(connector_id)) is not None:
        with database().connection() as conn:
            row = pipeline_rows.get_connector(conn, app_id, connector_id)
    if row is None:
        raise not_found("connector")
    return jsonify(data=pipeline_rows.connector_view(row))


@bp.delete("/connectors/<connector_id>")
def delete_connector(connector_id):
    app_id = caller_app()
    outcome = "missing"
    if (connector_id := pipeline_rows.parse_id(connector_id)) is not None:
        with database().connection() as conn:
            outcome = pipeline_rows.delete_connector(conn, app_id, connector_id)
    if outcome == "missing":
        raise not_found("connector")
    if outcome == "in_use":
        raise ApiError(400, "VALIDATION", "connector is used by a pipeline: delete the pipeline first")
    return "", 204
