"""The steps every producer contract shares: read the body, validate, check sizes, pack, queue.

Each step raises Refused with the HTTP status and a code and message; the views render it in
their own document's error shape.
"""
import functools
import time

from flask import current_app
from marshmallow import ValidationError
from prometheus_client import Counter

from shared import envelope
from shared.errors import flatten_marshmallow
from services.ingest.body import BadBody, BodyTooLarge, UnsupportedEncoding, read_json
from services.ingest.keys import KeyLookupUnavailable
from services.ingest.queue import QueueUnavailable, new_batch_id

EVENTS_ACCEPTED = Counter("sluice_ingest_events_accepted", "events accepted onto SQS", ["kind"])


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def receiving(view):
    """Wrap a producer view: the SQS senders count it in progress, so calls can wait to fill."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        queue = current_app.config["QUEUE"]
        queue.expect()
        try:
            return view(*args, **kwargs)
        finally:
            queue.done()
    return wrapper


def settings():
    return current_app.config["SETTINGS"]


def app_for_key(key: str) -> int | None:
    try:
        return current_app.config["KEYS"].app_for(key)
    except KeyLookupUnavailable:  # Postgres is down and this key was never seen
        raise Refused(503, "UNAVAILABLE", "Cannot check credentials right now; retry.",
                      {"Retry-After": "5"}) from None


def read_body(limit: int):
    try:
        return read_json(limit)
    except BodyTooLarge:
        raise Refused(413, "PAYLOAD_TOO_LARGE", f"Body is over {limit} bytes.") from None
    except BadBody as exc:
        raise Refused(400, "MALFORMED_JSON", str(exc)) from None
    except UnsupportedEncoding as exc:
        raise Refused(415, "UNSUPPORTED_ENCODING",
                      f"Content-Encoding {exc} is not supported; use gzip.") from None


def validate(validator, body) -> list | dict:
    try:
        return validator(body)
    except ValidationError as exc:
        field, message = flatten_marshmallow(exc.messages)[0]
        raise Refused(400, "INVALID_EVENT", f"{field}: {message}") from None


def enqueue(kind: str, app_id: int, events: list) -> str:
    """Put the events on SQS in as few messages as fit; return the request's batch id.

    Returns only once SQS has accepted every message: that is what a 200 promises.
    """
    limit = settings().max_event_bytes
    try:
        encoded = envelope.encode_events(events)
    except RecursionError:  # parsed just under Python's depth limit, but cannot be written back
        raise Refused(400, "MALFORMED_JSON", "Malformed JSON: nested too deeply") from None
    for index, text in enumerate(encoded):
        try:
            size = len(text.encode())
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") parses but cannot be stored
            raise Refused(400, "INVALID_EVENT", f"[{index}]: text is not valid Unicode.") from None
        if size > limit:
            raise Refused(413, "PAYLOAD_TOO_LARGE", f"[{index}]: event is {size} bytes, over {limit}.")
    batch = new_batch_id()
    try:
        bodies = envelope.pack_encoded(kind, app_id, batch, encoded, int(time.time() * 1000),
                                       settings().message_max_bytes)
        current_app.config["QUEUE"].send(bodies)
    except envelope.EnvelopeError as exc:  # only when limits are set so an event exceeds a message
        raise Refused(413, "PAYLOAD_TOO_LARGE", str(exc)) from None
    except QueueUnavailable:
        raise Refused(503, "UNAVAILABLE", "The queue did not accept the events; retry.",
                      {"Retry-After": "2"}) from None
    EVENTS_ACCEPTED.labels(kind).inc(len(events))
    return batch
