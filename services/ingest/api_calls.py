"""API calls: Moesif event ingestion (reference 001) at /moesifapi/... and /v1/..., where the real
client posts.

The key travels in X-Moesif-Application-Id. The document defines no error shape, so errors use
shared.errors.simple_error. The client accepts any 2xx and reads no body; we answer 200 with the
batch id so a producer can trace its events. Moesif's middlewares also read the app config and
governance rules here (services/ingest/middleware_config.py).
"""

from flask import Blueprint, Response, jsonify, request

from services.api_errors import ApiError, use_shape, validated
from services.ingest import middleware_config
from services.ingest.intake import IDEMPOTENCY_HEADER, app_for_key, enqueue, receiving
from services.openapi import documented
from services.request_body import read_json
from services.web import settings
from shared.enums import EventKind
from shared.errors import simple_error
from shared.schemas.api_calls import (
    GovernanceRuleSchema,
    MoesifAcceptedSchema,
    MoesifConfigSchema,
    MoesifEventSchema,
    validate_moesif_event,
    validate_moesif_events,
)

bp = Blueprint("moesif_events", __name__)
use_shape(bp, simple_error)


def authenticate() -> int:
    key = request.headers.get("X-Moesif-Application-Id", "").strip()
    app_id = app_for_key(key) if key else None
    if app_id is None:
        raise ApiError(401, "UNAUTHORIZED", "X-Moesif-Application-Id must be a valid application key.")
    return app_id


_ACCEPTED = {200: ("Queued: the batch id and how many events it holds.", MoesifAcceptedSchema)}
_ERRORS = (400, 401, 413, 415, 503)
_SECURITY = [{"moesifApplicationId": []}]


@bp.post("/moesifapi/events")
@bp.post("/v1/events")
@documented(
    "Add one API call event (Moesif)",
    body=MoesifEventSchema,
    answers=_ACCEPTED,
    errors=_ERRORS,
    headers=[IDEMPOTENCY_HEADER],
    security=_SECURITY,
)
@receiving
def post_event():
    app_id = authenticate()
    event = validated(validate_moesif_event, read_json(settings().moesif_max_body_bytes), "INVALID_EVENT")
    return accepted(enqueue(EventKind.MOESIF.value, app_id, [event]).batch, 1)


@bp.post("/moesifapi/events/batch")
@bp.post("/v1/events/batch")
@documented(
    "Add a batch of API call events (Moesif)",
    description="At most SLUICE_MOESIF_MAX_BODY_BYTES (250 kB) of JSON, after inflating a gzip body.",
    body=MoesifEventSchema(many=True),
    answers=_ACCEPTED,
    errors=_ERRORS,
    headers=[IDEMPOTENCY_HEADER],
    security=_SECURITY,
)
@receiving
def post_batch():
    app_id = authenticate()
    events = validated(validate_moesif_events, read_json(settings().moesif_max_body_bytes), "INVALID_EVENT")
    if not events:
        raise ApiError(400, "INVALID_EVENT", "body: at least one event is required.")
    return accepted(enqueue(EventKind.MOESIF.value, app_id, events).batch, len(events))


@bp.get("/moesifapi/v1/config")
@bp.get("/v1/config")
@documented(
    "The app config Moesif's middlewares read (sample everything), tagged X-Moesif-Config-ETag",
    answers={
        200: ("The config; the same X-Moesif-Config-ETag comes on every events answer.", MoesifConfigSchema)
    },
    errors=(401, 503),
    security=_SECURITY,
)
def get_config():
    authenticate()
    return tagged(middleware_config.CONFIG_JSON)


@bp.get("/moesifapi/v1/rules")
@bp.get("/v1/rules")
@documented(
    "Governance rules for Moesif's middlewares: none",
    answers={200: ("An empty list of rules, tagged X-Moesif-Rules-Tag.", GovernanceRuleSchema(many=True))},
    errors=(401, 503),
    security=_SECURITY,
)
def get_rules():
    authenticate()
    return tagged(middleware_config.RULES_JSON)


def tagged(document: str) -> Response:
    return Response(document, mimetype="application/json", headers=middleware_config.TAG_HEADERS)


def accepted(batch: str, count: int):
    return jsonify(batch=batch, count=count), 200, middleware_config.TAG_HEADERS
