"""Connectors (Formance, reference 004): the destinations pipelines deliver to, validated per driver."""

from flask import Blueprint, jsonify

from services import quotas
from services.api_errors import ApiError, not_found, over_limit, use_shape, validated
from services.control import pipeline_rows
from services.control.auth import caller_app
from services.control.cursor_pages import cursor_page
from services.request_body import read_json
from services.web import database, settings
from shared.errors import FORMANCE_CODES, formance_error
from shared.schemas.pipelines import load_connector

bp = Blueprint("connectors", __name__)
use_shape(bp, formance_error, FORMANCE_CODES)


@bp.get("/connectors")
def list_connectors():
    app_id = caller_app()
    with database().connection() as conn:
        return jsonify(cursor_page(conn, "connectors", app_id, pipeline_rows.connector_view))


@bp.post("/connectors")
def create_connector():
    app_id = caller_app()
    connector = validated(load_connector, read_json(settings().max_body_bytes), "VALIDATION")
    with database().connection() as conn:
        limit = settings().connectors_per_app
        if quotas.at_limit(conn, app_id, quotas.CONNECTORS, limit):
            raise over_limit(limit, "connectors")
        row = pipeline_rows.create_connector(conn, app_id, connector["driver"], connector["config"])
    return jsonify(data=pipeline_rows.connector_view(row)), 201


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
