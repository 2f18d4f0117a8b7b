"""The SQS envelope: how a request's events travel from the ingest API to the workers.

Version 1, one JSON object per SQS message body:

    {"v": 1,                      # envelope version; workers refuse versions they do not know
     "kind": "barchart",          # shared.enums.EventKind: which contract the events follow
     "app_id": 42,                # the tenant every event belongs to
     "batch": "<uuid>",           # the producer request's batch id
     "first_sequence": 0,         # sequence of events[0]; events[i] has first_sequence + i
     "received_ms": 1700000000000,# when the ingest API accepted the request
     "events": [ {...}, ... ]}    # validated events, in request order

A body that starts with "{" is that JSON as is. A body that starts with "gz:" is the same JSON,
gzip-compressed and base64-encoded (SQS bodies must be text); the ingest API uses that form only
when it is smaller, or when the JSON holds characters SQS refuses in a body (U+FFFE, U+FFFF).
(app_id, batch, first_sequence + i) identifies an event, which is what makes storing idempotent
when SQS delivers a message twice, and a producer's retry with the same Idempotency-Key too (the
ingest API derives the batch id from the key).

decode() refuses, as not an envelope, anything the drain could not even file away: an unknown
version or kind, app_id beyond bigint, a batch that is not a UUID, sequences beyond integer.
What is wrong inside an event is for the drain to find out (it parks that event).

Event forms by kind: "barchart" events are shared.schemas.events Events as loaded; "moesif"
events are what shared.schemas.api_calls.validate_moesif_events returns (times in UTC ISO 8601).
"""

import base64
import gzip
import json
import re
import uuid

from shared.enums import EventKind
from shared.storage_limits import BIGINT, ENVELOPE_COLUMNS, INTEGER_RANGES

VERSION = 1
GZIP_PREFIX = "gz:"
# Below this size gzip's header and base64's third rarely pay for themselves.
COMPRESS_FROM_BYTES = 1024
# Characters JSON leaves as they are but SQS refuses in a message body (it allows #x9 #xA #xD,
# #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF; json.dumps already escapes the control characters).
_SQS_UNSAFE = re.compile("[\ufffe\uffff]")


class EnvelopeError(ValueError):
    """A message body that is not a valid envelope of a version we know: poison."""


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_body(envelope_json: str) -> str:
    """Return the SQS body for an envelope's JSON text, compressed when that is smaller.

    Text that SQS refuses in a body (U+FFFE, U+FFFF) is always sent compressed: base64 is safe.
    """
    raw = envelope_json.encode()
    sqs_safe = _SQS_UNSAFE.search(envelope_json) is None
    if len(raw) < COMPRESS_FROM_BYTES and sqs_safe:
        return envelope_json
    packed = GZIP_PREFIX + base64.b64encode(gzip.compress(raw, compresslevel=6)).decode("ascii")
    return packed if len(packed) < len(raw) or not sqs_safe else envelope_json


def envelope_head(kind: str, app_id: int, batch: str, first_sequence: int, received_ms: int) -> str:
    """The JSON text of an envelope up to its events array, so packers can append event JSON."""
    head = _dumps(
        {
            "v": VERSION,
            "kind": kind,
            "app_id": app_id,
            "batch": batch,
            "first_sequence": first_sequence,
            "received_ms": received_ms,
        }
    )
    return head[:-1] + ',"events":['


def encode_events(events: list) -> list[str]:
    """Each event's JSON text, as it will sit inside an envelope (callers can check its size)."""
    return [_dumps(e) for e in events]


def pack(kind: str, app_id: int, batch: str, events: list, received_ms: int, max_bytes: int) -> list[str]:
    """Split a request's events into as few envelope bodies as fit under max_bytes each."""
    return pack_encoded(kind, app_id, batch, encode_events(events), received_ms, max_bytes)


def pack_encoded(
    kind: str, app_id: int, batch: str, encoded: list[str], received_ms: int, max_bytes: int
) -> list[str]:
    """pack() for events already turned into JSON text by encode_events().

    Events are serialised once. A chunk grows while its uncompressed JSON fits max_bytes; when it
    compresses, the chunk may grow further as long as the compressed body still fits, which is
    what keeps large requests to one or two messages.
    """
    bodies: list[str] = []
    start = 0
    while start < len(encoded):
        end, body = _largest_fitting_chunk(kind, app_id, batch, encoded, start, received_ms, max_bytes)
        bodies.append(body)
        start = end
    return bodies


def _chunk_body(kind, app_id, batch, encoded, start, end, received_ms) -> str:
    head = envelope_head(kind, app_id, batch, start, received_ms)
    return encode_body(head + ",".join(encoded[start:end]) + "]}")


def _largest_fitting_chunk(kind, app_id, batch, encoded, start, received_ms, max_bytes):
    """Find the largest end such that events[start:end] encode under max_bytes (at least one)."""
    head_len = len(envelope_head(kind, app_id, batch, start, received_ms).encode()) + 2
    # First, the chunk that fits uncompressed: a linear walk over known sizes, no encoding.
    size, end = head_len, start
    while end < len(encoded):
        add = len(encoded[end].encode()) + (1 if end > start else 0)
        if size + add > max_bytes and end > start:
            break
        size += add
        end += 1
    body = _chunk_body(kind, app_id, batch, encoded, start, end, received_ms)
    if len(body.encode()) > max_bytes:
        raise EnvelopeError(f"event {start} alone is larger than the message limit of {max_bytes} bytes")
    if end == len(encoded) or not body.startswith(GZIP_PREFIX):
        return end, body
    # It compresses: grow by the observed ratio and back off until the compressed body fits.
    ratio = len(body) / size
    lo, hi = end, min(len(encoded), start + int((end - start) / max(ratio, 0.05)))
    best = (end, body)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = _chunk_body(kind, app_id, batch, encoded, start, mid, received_ms)
        if len(candidate.encode()) <= max_bytes:
            best, lo = (mid, candidate), mid
        else:
            hi = mid - 1
    return best


_KINDS = frozenset(kind.value for kind in EventKind)


def decode(body: str) -> dict:
    """Parse an SQS body into an envelope dict; raise EnvelopeError for anything else."""
    try:
        if body.startswith(GZIP_PREFIX):
            body = gzip.decompress(base64.b64decode(body[len(GZIP_PREFIX) :], validate=True)).decode()
        envelope = json.loads(body)
    except (ValueError, OSError, EOFError, RecursionError) as exc:
        raise EnvelopeError(f"unreadable body: {exc}") from exc
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope is not a JSON object")
    if envelope.get("v") != VERSION:
        raise EnvelopeError(f"unknown envelope version {envelope.get('v')!r}")
    for key, kind in (
        ("kind", str),
        ("app_id", int),
        ("batch", str),
        ("first_sequence", int),
        ("received_ms", int),
        ("events", list),
    ):
        if not isinstance(envelope.get(key), kind) or isinstance(envelope.get(key), bool):
            raise EnvelopeError(f"envelope field {key!r} missing or not {kind.__name__}")
    _check_fits(envelope)
    return envelope


def _check_fits(envelope: dict) -> None:
    if envelope["kind"] not in _KINDS:
        raise EnvelopeError(f"unknown kind {envelope['kind']!r}")
    try:
        uuid.UUID(envelope["batch"])
    except ValueError:
        raise EnvelopeError(f"batch {envelope['batch'][:40]!r} is not a UUID") from None
    last_sequence = envelope["first_sequence"] + len(envelope["events"]) - 1
    for name, value, column_type in (
        ("app_id", envelope["app_id"], ENVELOPE_COLUMNS["app_id"]),
        ("first_sequence", envelope["first_sequence"], ENVELOPE_COLUMNS["sequence"]),
        ("last sequence", last_sequence, ENVELOPE_COLUMNS["sequence"]),
        ("received_ms", envelope["received_ms"], BIGINT),
    ):
        low, high = INTEGER_RANGES[column_type]
        if not max(0, low) <= value <= high:
            raise EnvelopeError(f"envelope {name} {value} is outside 0..{high}")


def groups(envelope: dict) -> list[dict]:
    """The request groups a decoded envelope carries, each with kind, app_id, batch,
    first_sequence, received_ms and events. A version 1 envelope is one group."""
    return [envelope]
