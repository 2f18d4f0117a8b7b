"""The steps every producer contract shares after reading the body: check sizes, pack, queue.

Each step refuses with an ApiError; the blueprints render it in their own document's shape.
"""

import functools
import re
import time
import uuid

from flask import current_app, request
from prometheus_client import Counter

from services.api_errors import ApiError, unavailable
from services.ingest.keys import KeyLookupUnavailable
from services.ingest.queue import QueueUnavailable
from services.web import settings
from shared import envelope

EVENTS_ACCEPTED = Counter("sluice_ingest_events_accepted", "events accepted onto SQS", ["kind"])

# A request's batch id is uuid5(this, "<app id>:<Idempotency-Key>"), so a retry with the same key
# gets the same batch id in any process, and its events the same (app, batch, sequence) rows,
# which storing already keeps once. Changing this constant would break that promise for keys
# in flight across a deploy: never change it.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5b1c0e8a-3f6d-4e2b-9c71-0d4a8f2e6b93")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII: UUIDs, base64, ULIDs...
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
    "description": "the producer's id for this request: a retry with the same key stores nothing twice "
    "and is answered with the same batch and sequences (docs/ingest.md)",
}


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


def app_for_key(key: str) -> int | None:
    try:
        return current_app.config["KEYS"].app_for(key)
    except KeyLookupUnavailable:  # Postgres is down and this key was never seen
        raise unavailable("Cannot check credentials right now; retry.", 5) from None


def enqueue(kind: str, app_id: int, events: list) -> envelope.Group:
    """Put the events on SQS, in messages shared with concurrent requests; return them as queued
    (the batch id, and each event's JSON).

    Returns only once SQS has accepted every message holding them: that is what a 200 promises.
    """
    # An event must fit a message of its own, whatever the limits are set to.
    limit = min(settings().max_event_bytes, settings().message_max_bytes - envelope.OVERHEAD_BYTES)
    encoded = []
    for index, event in enumerate(events):
        try:
            text = envelope.encode_event(event)
        except RecursionError:  # parsed just under Python's depth limit, but cannot be written back
            raise ApiError(400, "MALFORMED_JSON", "Malformed JSON: nested too deeply") from None
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") parses but cannot be stored
            raise ApiError(400, "INVALID_EVENT", f"[{index}]: text is not valid Unicode.") from None
        if len(text) > limit:
            raise ApiError(413, "PAYLOAD_TOO_LARGE", f"[{index}]: event is {len(text)} bytes, over {limit}.")
        if not envelope.sqs_safe(text) and not envelope.fits_alone(text, settings().message_max_bytes):
            raise ApiError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"[{index}]: event holds U+FFFE or U+FFFF, so it travels compressed, and compressed "
                f"it is over the message limit of {settings().message_max_bytes} bytes.",
            )
        encoded.append(text)
    batch = batch_id(app_id)
    group = envelope.Group(kind, app_id, batch, 0, int(time.time() * 1000), encoded)
    try:
        current_app.config["QUEUE"].send(group)
    except QueueUnavailable:
        raise unavailable("The queue did not accept the events; retry.", 2) from None
    EVENTS_ACCEPTED.labels(kind).inc(len(events))
    return group


def batch_id(app_id: int) -> str:
    """The request's batch id: derived from its Idempotency-Key when it sends one, else new."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return str(uuid.uuid4())
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 255 visible ASCII characters."
        )
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{app_id}:{key}"))
