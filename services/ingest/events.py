"""POST /events: the Barchart producer contract (reference 000), answered in Barchart's error shape."""

from flask import Blueprint, Response, request

from services.api_errors import ApiError, use_shape, validated
from services.ingest.intake import IDEMPOTENCY_HEADER, app_for_key, enqueue, receiving
from services.openapi import documented
from services.request_body import read_json
from services.web import settings
from shared.enums import EventKind
from shared.errors import barchart_error
from shared.schemas.events import (
    EventFullSchema,
    EventSchema,
    EventsEnvelopeSchema,
    event_full_array,
    validate_events,
)

bp = Blueprint("barchart_events", __name__)
use_shape(bp, barchart_error)


def authenticate() -> int:
    """The app this request posts for: HTTP Basic (app id, key), or the open-ingest app when the
    request carries no Authorization header at all (one it cannot decode is refused, not ignored)."""
    auth = request.authorization
    if "Authorization" not in request.headers:
        app_id = settings().open_ingest_app
    elif auth is None or auth.type != "basic":
        app_id = None
    else:
        app_id = app_for_key(auth.password or "")
        if app_id is not None and str(app_id) != auth.username:
            app_id = None  # a real key, claimed for another app
    if app_id is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "Valid HTTP Basic credentials (app id, API key) are required.",
            {"WWW-Authenticate": 'Basic realm="sluice"'},
        )
    return app_id


@bp.post("/events")
@documented(
    "Create events (Barchart)",
    description="HTTP Basic names the app; without an Authorization header the events go to the "
    "open-ingest app (SLUICE_OPEN_INGEST_APP) when one is set. The body is the array of events or "
    '{"events": [...]}; gzip bodies (Content-Encoding: gzip) are inflated up to SLUICE_MAX_BODY_BYTES.',
    body={"oneOf": [EventSchema(many=True), EventsEnvelopeSchema]},
    answers={200: ("The events as queued, each with its batch and sequence.", EventFullSchema(many=True))},
    errors=(400, 401, 413, 415, 503),
    headers=[IDEMPOTENCY_HEADER],
    security=[{"basic": []}],
)
@receiving
def post_events():
    app_id = authenticate()
    body = read_json(settings().max_body_bytes)
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]  # the real Barchart client wraps the array
    events = validated(validate_events, body, "INVALID_EVENT")
    if not events:
        raise ApiError(400, "INVALID_EVENT", "body: at least one event is required.")
    queued = enqueue(EventKind.BARCHART.value, app_id, events)
    return Response(event_full_array(queued.events, queued.batch), mimetype="application/json")
