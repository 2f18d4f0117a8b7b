"""POST /events: the Barchart producer contract."""
import time

from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError
from prometheus_client import Counter

from shared import envelope
from shared.enums import EventKind
from shared.errors import barchart_error, flatten_marshmallow
from shared.schemas.barchart import event_full, validate_events
from services.ingest.body import BadBody, BodyTooLarge, read_json
from services.ingest.keys import KeyLookupUnavailable
from services.ingest.queue import QueueUnavailable, new_batch_id

bp = Blueprint("barchart_events", __name__)
EVENTS_ACCEPTED = Counter("sluice_ingest_events_accepted", "events accepted onto SQS", ["kind"])


def error(status: int, code: str, message: str, **headers):
    return jsonify(barchart_error(code, message)), status, headers


def authenticate() -> int | None:
    """The app this request posts for: HTTP Basic (app id, key), or the open-ingest app."""
    settings = current_app.config["SETTINGS"]
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return settings.open_ingest_app
    app_id = current_app.config["KEYS"].app_for(auth.password or "")
    return app_id if app_id is not None and str(app_id) == auth.username else None


@bp.post("/events")
def post_events():
    settings = current_app.config["SETTINGS"]
    try:
        app_id = authenticate()
    except KeyLookupUnavailable:
        return error(503, "UNAVAILABLE", "Cannot check credentials right now.", **{"Retry-After": "5"})
    if app_id is None:
        return error(401, "UNAUTHORIZED", "Valid HTTP Basic credentials (app id, API key) are required.",
                     **{"WWW-Authenticate": 'Basic realm="sluice"'})
    try:
        body = read_json(settings.max_body_bytes)
    except BodyTooLarge:
        return error(413, "PAYLOAD_TOO_LARGE", f"Body is over {settings.max_body_bytes} bytes.")
    except BadBody as exc:
        return error(400, "MALFORMED_JSON", str(exc))
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]
    try:
        events = validate_events(body)
    except ValidationError as exc:
        field, message = flatten_marshmallow(exc.messages)[0]
        return error(400, "INVALID_EVENT", f"{field}: {message}")
    if not events:
        return error(400, "INVALID_EVENT", "body: at least one event is required.")

    batch = new_batch_id()
    try:
        bodies = envelope.pack(EventKind.BARCHART.value, app_id, batch, events,
                               int(time.time() * 1000), settings.message_max_bytes)
        current_app.config["QUEUE"].send(bodies)
    except envelope.EnvelopeError as exc:
        return error(413, "PAYLOAD_TOO_LARGE", str(exc))
    except QueueUnavailable:
        return error(503, "UNAVAILABLE", "The queue did not accept the events; retry.",
                     **{"Retry-After": "2"})
    EVENTS_ACCEPTED.labels(EventKind.BARCHART.value).inc(len(events))
    return jsonify([event_full(e, batch, i) for i, e in enumerate(events)])
