"""POST /events: the Barchart producer contract."""
from flask import Blueprint, jsonify, request

from shared.enums import EventKind
from shared.errors import barchart_error
from shared.schemas.barchart import event_full, validate_events
from services.ingest.intake import (Refused, app_for_key, enqueue, read_body, receiving, settings,
                                    validate)

bp = Blueprint("barchart_events", __name__)


@bp.errorhandler(Refused)
def refused(exc: Refused):
    return jsonify(barchart_error(exc.code, exc.message)), exc.status, exc.headers


def authenticate() -> int:
    """The app this request posts for: HTTP Basic (app id, key), or the open-ingest app."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        app_id = settings().open_ingest_app
    else:
        app_id = app_for_key(auth.password or "")
        if app_id is not None and str(app_id) != auth.username:
            app_id = None  # a real key, claimed for another app
    if app_id is None:
        raise Refused(401, "UNAUTHORIZED", "Valid HTTP Basic credentials (app id, API key) are required.",
                      {"WWW-Authenticate": 'Basic realm="sluice"'})
    return app_id


@bp.post("/events")
@receiving
def post_events():
    app_id = authenticate()
    body = read_body(settings().max_body_bytes)
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]  # the real Barchart client wraps the array
    events = validate(validate_events, body)
    if not events:
        raise Refused(400, "INVALID_EVENT", "body: at least one event is required.")
    batch = enqueue(EventKind.BARCHART.value, app_id, events)
    return jsonify([event_full(e, batch, i) for i, e in enumerate(events)])
