"""Writing envelopes' events into Postgres with COPY, idempotently on (app, batch, sequence)."""

import io
import json

from shared.enums import EventKind

_EVENTS_IN = """
CREATE TEMP TABLE IF NOT EXISTS events_in (
    app_id bigint, batch uuid, sequence integer, customer text, product text, type text,
    timestamp bigint, context jsonb, received_ms bigint
) ON COMMIT DELETE ROWS"""

_EVENTS_MERGE = """
INSERT INTO events (app_id, batch, sequence, customer, product, type, timestamp, context, received_at)
SELECT app_id, batch, sequence, customer, product, type, timestamp, context,
       to_timestamp(received_ms / 1000.0)
FROM events_in
ON CONFLICT (app_id, batch, sequence) DO NOTHING"""

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
ON CONFLICT (app_id, batch, sequence) DO NOTHING"""


class UnknownKind(ValueError):
    pass


def write_envelopes(conn, envelopes: list[dict]) -> int:
    """Store every event of the envelopes in the caller's transaction; return rows inserted.

    Rows go through COPY into a temporary table and then into the real one with ON CONFLICT DO
    NOTHING, so a message delivered twice stores its events once.
    """
    by_kind: dict[str, list[dict]] = {}
    for env in envelopes:
        by_kind.setdefault(env["kind"], []).append(env)
    inserted = 0
    for kind, group in by_kind.items():
        writer = _WRITERS.get(kind)
        if writer is None:
            raise UnknownKind(kind)
        inserted += writer(conn, group)
    return inserted


def _text_field(value) -> str:
    """One value in COPY's text format. Unlike CSV, it tells NULL (\\N) from an empty string."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


def _jsonb(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _copy(conn, create_sql: str, table: str, rows, merge_sql: str) -> int:
    buf = io.StringIO()
    buf.writelines("\t".join(map(_text_field, row)) + "\n" for row in rows)
    buf.seek(0)
    with conn.cursor() as cur:
        cur.execute(create_sql)
        cur.copy_expert(f"COPY {table} FROM STDIN", buf)
        cur.execute(merge_sql)
        inserted = cur.rowcount
        cur.execute(f"TRUNCATE {table}")  # the same transaction may COPY another group
        return inserted


def _barchart_rows(envelopes):
    for env in envelopes:
        app_id, batch, first, received = (
            env["app_id"],
            env["batch"],
            env["first_sequence"],
            env["received_ms"],
        )
        for i, e in enumerate(env["events"]):
            yield (
                app_id,
                batch,
                first + i,
                e["customer"],
                e["product"],
                e["type"],
                e["timestamp"],
                _jsonb(e["context"]),
                received,
            )


def _moesif_rows(envelopes):
    """api_calls rows from events in the form shared.schemas.api_calls validate_moesif_events returns."""
    for env in envelopes:
        app_id, batch, first, received = (
            env["app_id"],
            env["batch"],
            env["first_sequence"],
            env["received_ms"],
        )
        for i, e in enumerate(env["events"]):
            req, resp = e["request"], e["response"]
            yield (
                app_id,
                batch,
                first + i,
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
                received,
            )


def _store_barchart(conn, envelopes) -> int:
    return _copy(conn, _EVENTS_IN, "events_in", _barchart_rows(envelopes), _EVENTS_MERGE)


def _store_moesif(conn, envelopes) -> int:
    return _copy(conn, _API_CALLS_IN, "api_calls_in", _moesif_rows(envelopes), _API_CALLS_MERGE)


_WRITERS = {EventKind.BARCHART.value: _store_barchart, EventKind.MOESIF.value: _store_moesif}
