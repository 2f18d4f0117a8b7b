"""Pipelines (Formance, reference 004): a module's stored events streamed to a connector, and their
state machine.

The control API only records the wanted state; the worker fleet's runners deliver.
"""

from flask import Blueprint, jsonify

from services import quotas
from services.api_errors import ApiError, not_found, over_limit, use_shape, validated
from services.control import pipeline_rows
from services.control.auth import CALLER_HEADERS, CALLER_SECURITY, caller_app
from services.control.cursor_pages import cursor_page
from services.openapi import documented
from services.request_body import read_json
from services.web import database, settings
from shared.errors import FORMANCE_CODES, formance_error
from shared.schemas.pipelines import (
    ACTIONS,
    ActingAppSchema,
    PageQuerySchema,
    PipelineAnswerSchema,
    PipelineConfigurationSchema,
    PipelinePageSchema,
    TransitionNotAllowed,
    load_pipeline,
)

bp = Blueprint("pipelines", __name__)
use_shape(bp, formance_error, FORMANCE_CODES)


_ERRORS = (401, 429, 503)
_FOUND = (401, 404, 429, 503)
_CALLER = {"security": CALLER_SECURITY, "headers": CALLER_HEADERS, "query": ActingAppSchema}


@bp.get("/pipelines")
@documented(
    "List pipelines",
    answers={200: ("A cursor page of pipelines, oldest first.", PipelinePageSchema)},
    errors={400: "A bad cursor or pageSize.", **dict.fromkeys(_ERRORS, "")},
    **{**_CALLER, "query": PageQuerySchema},
)
def list_pipelines():
    app_id = caller_app()
    with database().connection() as conn:
        return jsonify(cursor_page(conn, "pipelines", app_id, pipeline_rows.pipeline_view))


@bp.post("/pipelines")
@documented(
    "Create a pipeline (in INIT)",
    body=PipelineConfigurationSchema,
    answers={201: ("The pipeline.", PipelineAnswerSchema)},
    errors={
        400: "",
        404: "No such connector.",
        409: "A pipeline of that module to that connector exists, or the app has as many pipelines as "
        "SLUICE_PIPELINES_PER_APP allows.",
        415: "",
        **dict.fromkeys(_ERRORS, ""),
    },
    **_CALLER,
)
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


@bp.get("/pipelines/<pipelineID>")
@documented(
    "Get a pipeline and its state",
    answers={200: ("The pipeline.", PipelineAnswerSchema)},
    errors=_FOUND,
    **_CALLER,
)
def get_pipeline(pipelineID):
    app_id, pipeline_id = caller_app(), _pipeline_id(pipelineID)
    with database().connection() as conn:
        row = pipeline_rows.get_pipeline(conn, app_id, pipeline_id)
    if row is None:
        raise not_found("pipeline")
    return jsonify(data=pipeline_rows.pipeline_view(row))


@bp.delete("/pipelines/<pipelineID>")
@documented("Delete a pipeline", answers={204: ("Deleted.", None)}, errors=_FOUND, **_CALLER)
def delete_pipeline(pipelineID):
    app_id, pipeline_id = caller_app(), _pipeline_id(pipelineID)
    with database().connection() as conn:
        deleted = pipeline_rows.delete_pipeline(conn, app_id, pipeline_id)
    if not deleted:
        raise not_found("pipeline")
    return "", 204


@bp.post("/pipelines/<pipelineID>/<action>")
@documented(
    "Pause, resume, start, stop or reset a pipeline",
    description="action: " + ", ".join(ACTIONS) + ". reset starts over from the first stored event.",
    answers={202: ("Accepted: the runners follow the new state.", None)},
    path={"action": {"type": "string", "enum": list(ACTIONS)}},
    errors={**dict.fromkeys(_FOUND, ""), 409: "The pipeline's state does not allow the action."},
    **_CALLER,
)
def pipeline_action(pipelineID, action):
    app_id = caller_app()
    if action not in ACTIONS:  # answered here rather than by routing, to keep the Formance error shape
        raise ApiError(404, "NOT_FOUND", f"no action {action!r}: one of {', '.join(ACTIONS)}")
    pipeline_id = _pipeline_id(pipelineID)
    try:
        with database().connection() as conn:
            row = pipeline_rows.apply_action(conn, app_id, pipeline_id, action)
    except TransitionNotAllowed as exc:
        raise ApiError(409, "CONFLICT", str(exc)) from None
    if row is None:
        raise not_found("pipeline")
    return "", 202
