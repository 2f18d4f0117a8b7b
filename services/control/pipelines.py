"""Pipelines (Formance, reference 004): a module's stored events streamed to a connector, and their
state machine.

The control API only records the wanted state; the worker fleet's runners deliver.
"""

from flask import Blueprint, jsonify

from services import quotas
from services.api_errors import ApiError, not_found, over_limit, use_shape, validated
from services.control import pipeline_rows
from services.control.auth import caller_app
from services.control.cursor_pages import cursor_page
from services.request_body import read_json
from services.web import database, settings
from shared.errors import FORMANCE_CODES, formance_error
from shared.schemas.pipelines import ACTIONS, TransitionNotAllowed, load_pipeline

bp = Blueprint("pipelines", __name__)
use_shape(bp, formance_error, FORMANCE_CODES)


@bp.get("/pipelines")
def list_pipelines():
    app_id = caller_app()
    with database().connection() as conn:
        return jsonify(cursor_page(conn, "pipelines", app_id, pipeline_rows.pipeline_view))


@bp.post("/pipelines")
def create_pipeline():
    app_id = caller_app()
    wanted = validated(load_pipeline, read_json(settings().max_body_bytes), "VALIDATION")
    connector_id = pipeline_rows.parse_id(wanted["connectorID"])
    if connector_id is None:
        raise not_found("connector")
    try:
        with database().connection() as conn:
            limit = settings().pipelines_per_app
            if quotas.at_limit(conn, app_id, quotas.PIPELINES, limit):
                raise over_limit(limit, "pipelines")
            row = pipeline_rows.create_pipeline(conn, app_id, wanted["module"], connector_id)
    except pipeline_rows.DuplicatePipeline as exc:
        raise ApiError(409, "CONFLICT", str(exc)) from None
    if row is None:
        raise not_found("connector")
    return jsonify(data=pipeline_rows.pipeline_view(row)), 201


def _pipeline_id(raw: str) -> str:
    pipeline_id = pipeline_rows.parse_id(raw)
    if pipeline_id is None:
        raise not_found("pipeline")
    return pipeline_id


@bp.get("/pipelines/<pipeline_id>")
def get_pipeline(pipeline_id):
    app_id, pipeline_id = caller_app(), _pipeline_id(pipeline_id)
    with database().connection() as conn:
        row = pipeline_rows.get_pipeline(conn, app_id, pipeline_id)
    if row is None:
        raise not_found("pipeline")
    return jsonify(data=pipeline_rows.pipeline_view(row))


@bp.delete("/pipelines/<pipeline_id>")
def delete_pipeline(pipeline_id):
    app_id, pipeline_id = caller_app(), _pipeline_id(pipeline_id)
    with database().connection() as conn:
        deleted = pipeline_rows.delete_pipeline(conn, app_id, pipeline_id)
    if not deleted:
        raise not_found("pipeline")
    return "", 204


@bp.post("/pipelines/<pipeline_id>/<action>")
def pipeline_action(pipeline_id, action):
    app_id = caller_app()
    if action not in ACTIONS:  # answered here rather than by routing, to keep the Formance error shape
        raise ApiError(404, "NOT_FOUND", f"no action {action!r}: one of {', '.join(ACTIONS)}")
    pipeline_id = _pipeline_id(pipeline_id)
    try:
        with database().connection() as conn:
            row = pipeline_rows.apply_action(conn, app_id, pipeline_id, action)
    except TransitionNotAllowed as exc:
        raise ApiError(409, "CONFLICT", str(exc)) from None
    if row is None:
        raise not_found("pipeline")
    return "", 202


def _op(summary: str, status: str) -> dict:
    return {"summary": summary, "security": [{"basic": []}], "responses": {status: {"description": summary}}}


_ID = "/pipelines/{pipelineID}"
OPENAPI_PATHS = {
    "/connectors": {"get": _op("List connectors", "200"), "post": _op("Create connector", "201")},
    "/connectors/{connectorID}": {
        "get": _op("Get connector state", "200"),
        "delete": _op("Delete connector", "204"),
    },
    "/pipelines": {"get": _op("List pipelines", "200"), "post": _op("Create pipeline", "201")},
    _ID: {"get": _op("Get pipeline state", "200"), "delete": _op("Delete pipeline", "204")},
    **{f"{_ID}/{action}": {"post": _op(f"{action.capitalize()} pipeline", "202")} for action in ACTIONS},
}
