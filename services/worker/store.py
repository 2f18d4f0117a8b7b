"""Writing envelopes' events into Postgres with COPY, idempotently on (app, batch, sequence)."""
import csv
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


class UnknownKind(ValueError):
    pass


def store(conn, envelopes: list[dict]) -> int:
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


def _copy(conn, create_sql: str, table: str, rows, merge_sql: str) -> int:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    buf.seek(0)
    with conn.cursor() as cur:
        cur.execute(create_sql)
        cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buf)
        cur.execute(merge_sql)
        inserted = cur.rowcount
        cur.execute(f"TRUNCATE {table}")  # the same transaction may COPY another group
        return inserted


def _barchart_rows(envelopes):
    for env in envelopes:
        app_id, batch, first, received = env["app_id"], env["batch"], env["first_sequence"], env["received_ms"]
        for i, e in enumerate(env["events"]):
            yield (app_id, batch, first + i, e["customer"], e["product"], e["type"], e["timestamp"],
                   json.dumps(e["context"]), received)


def _store_barchart(conn, envelopes) -> int:
    return _copy(conn, _EVENTS_IN, "events_in", _barchart_rows(envelopes), _EVENTS_MERGE)


_WRITERS = {EventKind.BARCHART.value: _store_barchart}
