"""The SQS envelope: how producer requests' events travel from the ingest API to the workers.

Version 2 (what the ingest API writes), one JSON object per SQS message body:

    {"v": 2,                          # envelope version; workers refuse versions they do not know
     "groups": [                      # one or more, each the events of one producer request (or a
       {"kind": "barchart",           #   part of them): shared.enums.EventKind, the contract they follow
        "app_id": 42,                 #   the tenant every event of the group belongs to
        "batch": "<uuid>",            #   the producer request's batch id
        "first_sequence": 0,          #   sequence of events[0]; events[i] has first_sequence + i
        "received_ms": 1700000000000, #   when the ingest API accepted the request
        "events": [ {...}, ... ]},    #   validated events, in request order
       ...]}

The ingest API packs the events of concurrent requests, of any apps and kinds, into shared messages
of up to SLUICE_MESSAGE_MAX_BYTES (pack_message). A request whose events do not fit the rest of a
message continues in the next one as a group of its own whose first_sequence is the sequence of
its first event there, so a request may be several groups in several messages.

Version 1 (written by earlier ingest versions; workers still read it) is a single group with "v": 1
beside its fields: {"v": 1, "kind", "app_id", "batch", "first_sequence", "received_ms", "events"}.

A body that starts with "{" is that JSON as is. A body that starts with "gz:" is the same JSON,
gzip-compressed and base64-encoded (SQS bodies must be text); the ingest API uses that form only
when it is smaller, or when the JSON holds characters SQS refuses in a body (U+FFFE, U+FFFF).
(app_id, batch, first_sequence + i) identifies an event, which is what makes storing idempotent
when SQS delivers a message twice, and a producer's retry with the same Idempotency-Key too (the
ingest API derives the batch id from the key), however the retry's events are packed.

decode() returns a message's groups, and refuses, as not an envelope, anything the drain could not
even file away: an unknown version or kind, no groups, app_id beyond bigint, a batch that is not a
UUID, sequences beyond integer. What is wrong inside an event is for the drain to find out (it
parks that event).

Event forms by kind: "barchart" events are shared.schemas.events Events as loaded; "moesif"
events are what shared.schemas.api_calls.validate_moesif_events returns (times in UTC ISO 8601).
"""

import base64
import gzip
import json
import uuid
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from shared import jsontext
from shared.enums import EventKind
from shared.storage_limits import BIGINT, ENVELOPE_COLUMNS, INTEGER_RANGES

VERSION = 2
GZIP_PREFIX = "gz:"
# Below this size gzip's header and base64's third rarely pay for themselves.
COMPRESS_FROM_BYTES = 1024
# Characters JSON leaves as they are but SQS refuses in a message body (it allows #x9 #xA #xD,
# #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF; json.dumps already escapes the control characters):
# U+FFFE and U+FFFF, as UTF-8.
_SQS_UNSAFE = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
_MESSAGE_HEAD = b'{"v":2,"groups":['
_MESSAGE_TAIL = b"]}"
_GROUP_TAIL = b"]}"


class EnvelopeError(ValueError):
    """A message body that is not a valid envelope of a version we know: poison."""


class Group(NamedTuple):
    """Events of one request (or a part of it) to pack, each already JSON (encode_event)."""

    kind: str
    app_id: int
    batch: str
    first_sequence: int
    received_ms: int
    events: Sequence[bytes]


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_event(event) -> bytes:
    """An event's JSON as it sits inside an envelope (callers check its size). Raises
    UnicodeEncodeError for text that is not Unicode (a lone surrogate)."""
    return jsontext.dumps(event)


def encode_events(events: list) -> list[bytes]:
    return [encode_event(e) for e in events]


def sqs_safe(raw: bytes) -> bool:
    """Whether SQS takes this JSON in a body as it is (no U+FFFE, U+FFFF)."""
    # isascii() is a flag check, far faster than find(), which is left for text that is not ASCII.
    return raw.isascii() or all(raw.find(unsafe) < 0 for unsafe in _SQS_UNSAFE)


def encode_body(raw: bytes) -> str:
    """Return the SQS body for an envelope's JSON, compressed when that is smaller.

    JSON that SQS refuses in a body (U+FFFE, U+FFFF) is always sent compressed: base64 is safe.
    """
    safe = sqs_safe(raw)
    if len(raw) < COMPRESS_FROM_BYTES and safe:
        return raw.decode()
    # Level 1: on events it is 2.5x faster than the default and makes bodies a quarter larger,
    # which still fit: how many requests a process serves at once, not bytes, fills a message.
    packed = GZIP_PREFIX + base64.b64encode(gzip.compress(raw, compresslevel=1)).decode("ascii")
    return packed if len(packed) < len(raw) or not safe else raw.decode()


def _group_head(group: Group, first_sequence: int) -> bytes:
    head = _dumps(
        {
            "kind": group.kind,
            "app_id": group.app_id,
            "batch": group.batch,
            "first_sequence": first_sequence,
            "received_ms": group.received_ms,
        }
    )
    return (head[:-1] + ',"events":[').encode()


# The most a message adds around one event: with the longest values every head field can have.
_LONGEST = Group("barchart", 2**63 - 1, str(uuid.UUID(int=0)), 2**31 - 1, 2**63 - 1, ())
OVERHEAD_BYTES = len(_MESSAGE_HEAD + _MESSAGE_TAIL + _GROUP_TAIL) + len(_group_head(_LONGEST, 2**31 - 1))


def fits_alone(event: bytes, max_bytes: int) -> bool:
    """Whether a message of max_bytes can hold this event alone, whatever its group's head. Only
    text SQS refuses can fail this once the event is within max_bytes - OVERHEAD_BYTES: that text
    travels compressed, and may not compress enough."""
    try:
        pack_message([_LONGEST._replace(events=[event])], max_bytes)
    except EnvelopeError:
        return False
    return True


def _raw_message(groups: Sequence[Group], count: int) -> bytes:
    """The JSON of a message holding the first `count` events of the groups."""
    parts = []
    for group in groups:
        take = group.events[:count]
        if take:
            parts.append(_group_head(group, group.first_sequence) + b",".join(take) + _GROUP_TAIL)
        count -= len(take)
        if count <= 0:
            break
    return _MESSAGE_HEAD + b",".join(parts) + _MESSAGE_TAIL


def pack_message(groups: Sequence[Group], max_bytes: int) -> tuple[str, int]:
    """One message body holding as many of the groups' events, in order, as fit max_bytes; and
    how many events it holds (at least one; EnvelopeError if the first alone does not fit).

    A message grows while its uncompressed JSON fits; when it compresses, it may grow further as
    long as the compressed body still fits, which keeps large requests to one or two messages.
    """
    available = sum(len(g.events) for g in groups)
    # First, the most that fits uncompressed: a walk over known sizes, no encoding.
    size, count = len(_MESSAGE_HEAD + _MESSAGE_TAIL), 0
    for n, group in enumerate(groups):
        size += len(_group_head(group, group.first_sequence)) + len(_GROUP_TAIL) + (1 if n else 0)
        for i, event in enumerate(group.events):
            add = len(event) + (1 if i else 0)
            if size + add > max_bytes and count:
                break
            size += add
            count += 1
        else:
            continue
        break
    if count == available:
        body = encode_body(_raw_message(groups, count))
        if len(body.encode()) <= max_bytes:
            return body, count
    # More waits than fits as it is, or text SQS refuses must go compressed: as many as fit so.
    body, packed = _pack_compressed(groups, max_bytes)
    if packed < count:  # it compresses badly: what fits as it is, if SQS takes it as it is
        raw = _raw_message(groups, count)
        if len(raw) <= max_bytes and sqs_safe(raw):
            return raw.decode(), count
    if not packed:
        raise EnvelopeError(f"an event alone is larger than the message limit of {max_bytes} bytes")
    return body, packed


# Raw bytes between size checks while compressing: each check (a sync flush) costs a few bytes.
_CHECK_EVERY = 32 * 1024
# What finishing a message may add after the last check: its closing brackets and gzip's end.
_FINISH_BYTES = 64


def _pack_compressed(groups: Sequence[Group], max_bytes: int) -> tuple[str, int]:
    """(body, count): the most events, in order, whose gzip+base64 body fits max_bytes; ("", 0)
    when not even the first does. One pass compresses events as they come and checks the size
    every _CHECK_EVERY raw bytes; only when a check overflows is the message up to the previous
    check compressed again, so the work stays within about two messages' worth."""
    budget = (max_bytes - len(GZIP_PREFIX)) // 4 * 3 - _FINISH_BYTES  # gzip bytes that fit, base64'd
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1, as encode_body; 31: gzip format
    out: list[bytes] = []
    pending, produced, fitted, count, unchecked = [_MESSAGE_HEAD], 0, 0, 0, 0

    def check() -> bool:  # compress what is pending; does all so far still fit?
        nonlocal produced, pending
        out.append(compressor.compress(b"".join(pending)) + compressor.flush(zlib.Z_SYNC_FLUSH))
        produced, pending = produced + len(out[-1]), []
        return produced <= budget

    for group in groups:
        if not group.events:
            continue
        pending.append((_GROUP_TAIL + b"," if count else b"") + _group_head(group, group.first_sequence))
        for i, event in enumerate(group.events):
            pending.append(b"," + event if i else event)
            count, unchecked = count + 1, unchecked + len(event) + 1
            if count > 1 and unchecked < _CHECK_EVERY:
                continue
            if not check():
                return _compressed_body(groups, fitted), fitted
            fitted, unchecked = count, 0
    if count > fitted and not check():
        return _compressed_body(groups, fitted), fitted
    out.append(compressor.compress(_GROUP_TAIL + _MESSAGE_TAIL) + compressor.flush())
    return GZIP_PREFIX + base64.b64encode(b"".join(out)).decode("ascii"), count


def _compressed_body(groups: Sequence[Group], count: int) -> str:
    if not count:
        return ""
    raw = _raw_message(groups, count)
    return GZIP_PREFIX + base64.b64encode(gzip.compress(raw, compresslevel=1)).decode("ascii")


def remaining(groups: Sequence[Group], count: int) -> list[Group]:
    """The groups without their first `count` events (what pack_message left for the next message)."""
    rest = []
    for group in groups:
        if count >= len(group.events):
            count -= len(group.events)
            continue
        if count:
            group = group._replace(first_sequence=group.first_sequence + count, events=group.events[count:])
            count = 0
        rest.append(group)
    return rest


def pack_groups(groups: Sequence[Group], max_bytes: int) -> list[str]:
    """Every event of the groups, in order, in as few message bodies as fit max_bytes each."""
    bodies: list[str] = []
    groups = [g for g in groups if g.events]
    while groups:
        body, count = pack_message(groups, max_bytes)
        bodies.append(body)
        groups = remaining(groups, count)
    return bodies


def pack(kind: str, app_id: int, batch: str, events: list, received_ms: int, max_bytes: int) -> list[str]:
    """One request's events in as few message bodies as fit max_bytes each."""
    return pack_groups([Group(kind, app_id, batch, 0, received_ms, encode_events(events))], max_bytes)


_KINDS = frozenset(kind.value for kind in EventKind)


_GROUP_FIELDS = (
    ("kind", str),
    ("app_id", int),
    ("batch", str),
    ("first_sequence", int),
    ("received_ms", int),
    ("events", list),
)


def decode(body: str) -> list[dict]:
    """Parse an SQS body of either version into its groups, each a dict with kind, app_id, batch,
    first_sequence, received_ms and events; raise EnvelopeError for anything else."""
    try:
        if body.startswith(GZIP_PREFIX):
            raw = gzip.decompress(base64.b64decode(body[len(GZIP_PREFIX) :], validate=True))
        else:
            raw = body.encode()
        envelope = jsontext.loads(raw)
    except (ValueError, OSError, EOFError, RecursionError) as exc:
        raise EnvelopeError(f"unreadable body: {exc}") from exc
    if not isinstance(envelope, dict):
        raise EnvelopeError("envelope is not a JSON object")
    if envelope.get("v") == 1:
        return [_checked(envelope)]
    if envelope.get("v") != VERSION:
        raise EnvelopeError(f"unknown envelope version {envelope.get('v')!r}")
    groups = envelope.get("groups")
    if not isinstance(groups, list) or not groups:
        raise EnvelopeError("envelope field 'groups' missing, empty or not a list")
    return [_checked(group) for group in groups]


def _checked(group) -> dict:
    if not isinstance(group, dict):
        raise EnvelopeError("envelope group is not a JSON object")
    for key, kind in _GROUP_FIELDS:
        if not isinstance(group.get(key), kind) or isinstance(group.get(key), bool):
            raise EnvelopeError(f"envelope field {key!r} missing or not {kind.__name__}")
    if group["kind"] not in _KINDS:
        raise EnvelopeError(f"unknown kind {group['kind']!r}")
    try:  # in the form Postgres reads (uuid.UUID also takes "urn:uuid:...", "{...}")
        group["batch"] = str(uuid.UUID(group["batch"]))
    except ValueError:
        raise EnvelopeError(f"batch {group['batch'][:40]!r} is not a UUID") from None
    last_sequence = group["first_sequence"] + max(len(group["events"]), 1) - 1
    for name, value, column_type in (
        ("app_id", group["app_id"], ENVELOPE_COLUMNS["app_id"]),
        ("first_sequence", group["first_sequence"], ENVELOPE_COLUMNS["sequence"]),
        ("last sequence", last_sequence, ENVELOPE_COLUMNS["sequence"]),
        ("received_ms", group["received_ms"], BIGINT),
    ):
        low, high = INTEGER_RANGES[column_type]
        if not max(0, low) <= value <= high:
            raise EnvelopeError(f"envelope {name} {value} is outside 0..{high}")
    return group
