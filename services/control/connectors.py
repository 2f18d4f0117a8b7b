"""Connectors (Formance, reference 004): the destinations pipelines deliver to, validated per driver."""

from flask import Blueprint, jsonify

from services import egress, quotas
from services.api_errors import ApiError, not_found, over_limit, use_shape, validated
from services.control import pipeline_rows
from services.control.auth import CALLER_HEADERS, CALLER_SECURITY, caller_app
from services.control.cursor_pages import cursor_page
from services.openapi import documented
from services.request_body import read_json
from services.web import database, settings
from shared.errors import FORMANCE_CODES, formance_error
from shared.schemas.pipelines import (
    ActingAppSchema,
    ConnectorAnswerSchema,
    ConnectorConfigurationSchema,
    ConnectorPageSchema,
    PageQuerySchema,
    load_connector,
    s3_authority,
)

bp = Blueprint("connectors", __name__)
use_shape(bp, formance_error, FORMANCE_CODES)

LOOKUP_SECONDS = 2.0  # longest a create waits for the URL's host to resolve (the worker checks again)


_ERRORS = (401, 429, 503)
_FOUND = (401, 404, 429, 503)
_CALLER = {"security": CALLER_SECURITY, "headers": CALLER_HEADERS}


@bp.get("/connectors")
@documented(
    "List connectors",
    query=PageQuerySchema,
    answers={200: ("A cursor page of connectors, oldest first.", ConnectorPageSchema)},
    errors={400: "A bad cursor or pageSize.", **dict.fromkeys(_ERRORS, "")},
    **_CALLER,
)
def list_connectors():
    app_id = caller_app()
    with database().connection() as conn:
        return jsonify(cursor_page(conn, "connectors", app_id, pipeline_rows.connector_view))


@bp.post("/connectors")
@documented(
    "Create a connector",
    query=ActingAppSchema,
    body=ConnectorConfigurationSchema,
    answers={201: ("The connector.", ConnectorAnswerSchema)},
    errors={
        400: "",
        409: "The app has as many connectors as SLUICE_CONNECTORS_PER_APP allows.",
        415: "",
        **dict.fromkeys(_ERRORS, ""),
    },
    **_CALLER,
)
def create_connector():
    app_id = caller_app()
    connector = validated(load_connector, read_json(settings().max_body_bytes), "VALIDATION")
    _check_destination(connector["driver"], connector["config"])
    with database().connection() as conn:
        limit = settings().connectors_per_app
        if quotas.at_limit(conn, app_id, quotas.CONNECTORS, limit):
            raise over_limit(limit, "connectors")
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


@bp.get("/connectors/<connectorID>")
@documented(
    "Get a connector",
    query=ActingAppSchema,
    answers={200: ("The connector.", ConnectorAnswerSchema)},
    errors=_FOUND,
    **_CALLER,
)
def get_connector(connectorID):
    app_id = caller_app()
    row = None
    if (connector_id := pipeline_rows.parse_id(connectorID)) is not None:
        with database().connection() as conn:
            row = pipeline_rows.get_connector(conn, app_id, connector_id)
    if row is None:
        raise not_found("connector")
    return jsonify(data=pipeline_rows.connector_view(row))


@bp.delete("/connectors/<connectorID>")
@documented(
    "Delete a connector",
    query=ActingAppSchema,
    answers={204: ("Deleted.", None)},
    errors={400: "A pipeline still delivers to it.", **dict.fromkeys(_FOUND, "")},
    **_CALLER,
)
def delete_connector(connectorID):
    app_id = caller_app()
    outcome = "missing"
    if (connector_id := pipeline_rows.parse_id(connectorID)) is not None:
        with database().connection() as conn:
            outcome = pipeline_rows.delete_connector(conn, app_id, connector_id)
    if outcome == "missing":
        raise not_found("connector")
    if outcome == "in_use":
        raise ApiError(400, "VALIDATION", "connector is used by a pipeline: delete the pipeline first")
    return "", 204
