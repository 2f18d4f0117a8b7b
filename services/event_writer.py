"""Writing events into Postgres with COPY, idempotently on (app, batch, sequence).

The drain and `sluice dlq replay` store through here. Each event becomes one line of COPY's text
format first (copy_line), on its own, so an event that cannot even be written out is known before
the database is asked; services/parking.py decides what to do with the ones it refuses.
"""

import io
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from shared.enums import EventKind

_EVENTS_IN = """
CREATE TEMP TABLE IF NOT EXISTS events_in (
    app_id bigint, batch uuid, sequence integer, customer text, product text, type text,
    timestamp bigint, context jsonb, received_ms bigint
) ON COMMIT DELETE ROWS"""

# ON CONFLICT without a target: every unique index is an arbiter, so a redelivered event, or a
# Moesif call whose transaction_id the app already stored, inserts nothing and fails nothing.
_EVENTS_MERGE = """
INSERT INTO events (app_id, batch, sequence, customer, product, type, timestamp, context, received_at)
SELECT app_id, batch, sequence, customer, product, type, timestamp, context,
       to_timestamp(received_ms / 1000.0)
FROM events_in
ON CONFLICT DO NOTHING"""

_API_CALLS_IN = """
CREATE TEMP TABLE IF NOT EXISTS api_calls_in (
    app_id bigint, batch uuid, sequence integer, request_time timestamptz, response_time timestamptz,
    uri text, verb text, status integer, ip_address text, user_id text, company_id text,
    session_token text, direction text, weight integer, transaction_id text, tags text,
    blocked_by text, metadata jsonb, request jsonb, response jsonb, received_ms bigint
) ON COMMIT DELETE ROWS"""

_API_CALLS_MERGE = """
INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb, status,
                       ip_address, user_id, company_id, session_token, direction, weight,
                       transaction_id, tags, blocked_by, metadata, request, response, received_at)
SELECT app_id, batch, sequence, request_time, response_time, uri, verb, status,
       ip_address, user_id, company_id, session_token, direction, weight,
       transaction_id, tags, blocked_by, metadata, request, response,
       to_timestamp(received_ms / 1000.0)
FROM api_calls_in
ON CONFLICT DO NOTHING"""


class Pending(NamedTuple):
    """One event to store, and the identity that makes storing it idempotent."""

    kind: str
    app_id: int
    batch: str
    sequence: int
    received_ms: int
    event: Any


def pending(groups: Iterable[dict]) -> list[Pending]:
    """The events of envelope groups (shared.envelope.decode), each with its own sequence."""
    return [
        Pending(g["kind"], g["app_id"], g["batch"], g["first_sequence"] + i, g["received_ms"], event)
        for g in groups
        for i, event in enumerate(g["events"])
    ]


def copy_line(item: Pending) -> bytes:
    """The event's row in COPY's text format, encoded; raises if the event cannot be written out
    (a missing field, a wrong type, text that is not Unicode)."""
    row = _ROWS[item.kind](item)
    return ("\t".join(map(_text_field, row)) + "\n").encode()


def write(conn, lines: Iterable[tuple[str, bytes]]) -> int:
    """COPY (kind, line) pairs into their tables in the caller's transaction; return rows inserted."""
    by_kind: dict[str, list[bytes]] = {}
    for kind, line in lines:
        by_kind.setdefault(kind, []).append(line)
    return sum(_copy(conn, kind, chunk) for kind, chunk in by_kind.items())


def write_envelopes(conn, envelopes: list[dict]) -> int:
    """Store every event of the envelopes, or raise; for tests and benchmarks that fill tables."""
    return write(conn, ((item.kind, copy_line(item)) for item in pending(envelopes)))


def _text_field(value) -> str:
    """One value in COPY's text format. Unlike CSV, it tells NULL (\\N) from an empty string."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


def _jsonb(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _copy(conn, kind: str, lines: list[bytes]) -> int:
    create_sql, table, merge_sql = _TABLES[kind]
    with conn.cursor() as cur:
        cur.execute(create_sql)
        cur.copy_expert(f"COPY {table} FROM STDIN", io.BytesIO(b"".join(lines)))
        cur.execute(merge_sql)
        inserted = cur.rowcount
        cur.execute(f"TRUNCATE {table}")  # the same transaction may COPY another group
        return inserted


def _barchart_row(item: Pending) -> tuple:
    e = item.event
    return (
        item.app_id,
        item.batch,
        item.sequence,
        e["customer"],
        e["product"],
        e["type"],
        e["timestamp"],
        _jsonb(e["context"]),
        item.received_ms,
    )


def _moesif_row(item: Pending) -> tuple:
    """An api_calls row from an event in the form shared.schemas.api_calls validate_moesif_events returns."""
    e = item.event
    req, resp = e["request"], e["response"]
    return (
        item.app_id,
        item.batch,
        item.sequence,
        req["time"],
        resp["time"],
        req["uri"],
        req["verb"],
        resp["status"],
        req["ip_address"],
        e.get("user_id"),
        e.get("company_id"),
        e.get("session_token"),
        e.get("direction"),
        e.get("weight"),
        e.get("transaction_id"),
        e.get("tags"),
        e.get("blocked_by"),
        _jsonb(e.get("metadata")),
        _jsonb(req),
        _jsonb(resp),
        item.received_ms,
    )


_ROWS = {EventKind.BARCHART.value: _barchart_row, EventKind.MOESIF.value: _moesif_row}
_TABLES = {
    EventKind.BARCHART.value: (_EVENTS_IN, "events_in", _EVENTS_MERGE),
    EventKind.MOESIF.value: (_API_CALLS_IN, "api_calls_in", _API_CALLS_MERGE),
}
