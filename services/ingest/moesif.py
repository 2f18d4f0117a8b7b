"""Moesif event ingestion (reference 001) at /moesifapi/... and /v1/..., where the real client posts.

The key travels in X-Moesif-Application-Id. The document defines no error shape, so errors use
shared.errors.simple_error. The client accepts any 2xx and reads no body; we answer 200 with the
batch id so a producer can trace its events.
"""
from flask import Blueprint, jsonify, request

from shared.enums import EventKind
from shared.errors import simple_error
from shared.schemas.moesif import validate_moesif_event, validate_moesif_events
from services.ingest.intake import (Refused, app_for_key, enqueue, read_body, receiving, settings,
                                    validate)

bp = Blueprint("moesif_events", __name__)


@bp.errorhandler(Refused)
def refused(exc: Refused):
    return jsonify(simple_error(exc.code, exc.message)), exc.status, exc.headers


def authenticate() -> int:
    key = request.headers.get("X-Moesif-Application-Id", "").strip()
    app_id = app_for_key(key) if key else None
    if app_id is None:
        raise Refused(401, "UNAUTHORIZED", "X-Moesif-Application-Id must be a valid application key.")
    return app_id


@bp.post("/moesifapi/events")
@bp.post("/v1/events")
@receiving
def post_event():
    app_id = authenticate()
    event = validate(validate_moesif_event, read_body(settings().moesif_max_body_bytes))
    return accepted(enqueue(EventKind.MOESIF.value, app_id, [event]), 1)


@bp.post("/moesifapi/events/batch")
@bp.post("/v1/events/batch")
@receiving
def post_batch():
    app_id = authenticate()
    events = validate(validate_moesif_events, read_body(settings().moesif_max_body_bytes))
    if not events:
        raise Refused(400, "INVALID_EVENT", "body: at least one event is required.")
    return accepted(enqueue(EventKind.MOESIF.value, app_id, events), len(events))


def accepted(batch: str, count: int):
    return jsonify(batch=batch, count=count)
