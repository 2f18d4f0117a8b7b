"""Connectors (Formance): the destinations pipelines deliver to, validated per driver."""
from flask import Blueprint, jsonify
from marshmallow import ValidationError

from shared.errors import flatten_marshmallow
from shared.schemas.formance import load_connector
from services.control import formance_store as store
from services.control.formance import (ApiError, caller_app, cursor_page, db, install_errors, json_body,
                                       not_found, validation)

bp = Blueprint("connectors", __name__)
install_errors(bp)


def _validated(body) -> dict:
    try:
        return load_connector(body)
    except ValidationError as exc:
        field, message = flatten_marshmallow(exc.messages)[0]
        raise validation(f"{field}: {message}") from None


@bp.get("/connectors")
def list_connectors():
    app_id = caller_app()
    with db().connection() as conn:
        return jsonify(cursor_page(conn, "connectors", app_id, store.connector_view))


@bp.post("/connectors")
def create_connector():
    app_id = caller_app()
    connector = _validated(json_body())
    with db().connection() as conn:
        row = store.create_connector(conn, app_id, connector["driver"], connector["config"])
    return jsonify(data=store.connector_view(row)), 201


@bp.get("/connectors/<connector_id>")
def get_connector(connector_id):
    app_id = caller_app()
    row = None
    if (connector_id := store.parse_id(connector_id)) is not None:
        with db().connection() as conn:
            row = store.get_connector(conn, app_id, connector_id)
    if row is None:
        raise not_found("connector")
    return jsonify(data=store.connector_view(row))


@bp.delete("/connectors/<connector_id>")
def delete_connector(connector_id):
    app_id = caller_app()
    outcome = "missing"
    if (connector_id := store.parse_id(connector_id)) is not None:
        with db().connection() as conn:
            outcome = store.delete_connector(conn, app_id, connector_id)
    if outcome == "missing":
        raise not_found("connector")
    if outcome == "in_use":
        raise ApiError(400, "VALIDATION", "connector is used by a pipeline: delete the pipeline first")
    return "", 204
