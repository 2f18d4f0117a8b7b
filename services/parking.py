"""Store what can be stored, park the rest: no bad event sinks the good ones beside it.

Ingest refuses what the tables cannot hold, but Postgres may still refuse an event (a message an
older version wrote, a new constraint, a bug). store_or_park() stores every event it can in the
caller's transaction and files each refused one in `parked_events` with the database's reason,
so the drain can delete the message: nothing is retried forever, and nothing is dropped silently.
Operators list, export, replay and drop parked events with `sluice dlq` (services/dlq.py).

It works on a flat list of events, whatever messages or groups they came in.
"""

import json
from collections.abc import Iterator
from typing import NamedTuple

import psycopg2
import psycopg2.errors
import psycopg2.extras

from services import event_writer
from services.event_writer import Pending

# What the database says about the data itself; anything else (a lost connection, a missing table)
# is not the events' fault and propagates, so the messages are received again later.
REFUSED_BY_DATABASE = (psycopg2.DataError, psycopg2.IntegrityError, psycopg2.errors.ProgramLimitExceeded)
# What turning an event into a row can raise: a field missing, a wrong type, text that is not Unicode.
UNWRITABLE = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)

_PARK = """
INSERT INTO parked_events (app_id, kind, batch, sequence, received_ms, event, reason)
VALUES %s
ON CONFLICT (app_id, kind, batch, sequence) DO UPDATE
SET event = EXCLUDED.event, received_ms = EXCLUDED.received_ms, reason = EXCLUDED.reason, parked_at = now()"""


class Parked(NamedTuple):
    item: Pending
    reason: str


def store_or_park(conn, items: list[Pending]) -> tuple[int, list[Parked]]:
    """Store every event Postgres takes, park the others; return (rows inserted, parked).

    A refused COPY is split in halves until each refused event stands alone, so k bad events
    among n cost about 2·k·log2(n) extra COPYs, and none when all are good. Commit is the caller's.
    """
    parked: list[Parked] = []
    lines: list[tuple[Pending, bytes]] = []
    for item in items:
        try:
            lines.append((item, event_writer.copy_line(item)))
        except UNWRITABLE as exc:
            parked.append(Parked(item, _reason(exc)))
    stored = _store_halves(conn, lines, parked)
    # One per event: a message delivered twice in one receive brings its events twice.
    parked = list({_identity(p.item): p for p in parked}.values())
    park(conn, parked)
    return stored, parked


def _store_halves(conn, lines: list[tuple[Pending, bytes]], parked: list[Parked]) -> int:
    if not lines:
        return 0
    with conn.cursor() as cur:
        cur.execute("SAVEPOINT store")
        try:
            stored = event_writer.write(conn, ((item.kind, line) for item, line in lines))
        except REFUSED_BY_DATABASE as exc:
            cur.execute("ROLLBACK TO SAVEPOINT store")
            if len(lines) == 1:
                parked.append(Parked(lines[0][0], _reason(exc)))
                return 0
            half = len(lines) // 2
            return _store_halves(conn, lines[:half], parked) + _store_halves(conn, lines[half:], parked)
        cur.execute("RELEASE SAVEPOINT store")
        return stored


def park(conn, parked: list[Parked]) -> None:
    """File events in parked_events; one parked again (a redelivery, a replay) gets the new reason."""
    if not parked:
        return
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            _PARK,
            [(*_identity(p.item), p.item.received_ms, _event_text(p.item.event), p.reason) for p in parked],
            template="(%s, %s, %s, %s, %s, %s, %s)",
        )


def _event_text(event) -> str:
    # ASCII-escaped JSON: the event may hold exactly what Postgres refuses (a NUL, a lone
    # surrogate), and as \\u escapes in a text column it is kept to the byte.
    return json.dumps(event, ensure_ascii=True)


def _reason(exc: Exception) -> str:
    if isinstance(exc, psycopg2.Error):
        text = str(exc).strip()  # the message, DETAIL and CONTEXT (which names the column)
    else:
        text = f"cannot be written as a row: {type(exc).__name__}: {exc}"
    # The reason is stored too: keep it to what a text column takes.
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


# --- what operators do with parked events (sluice dlq) -------------------------------------------

_COLUMNS = "id, app_id, kind, batch::text, sequence, received_ms, reason, parked_at"


def listing(conn, limit: int) -> tuple[int, list[dict]]:
    """(how many are parked, the oldest `limit` of them without their events)."""
    with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM parked_events ORDER BY id LIMIT %s", (limit,))
        return count(conn), [_plain(row) for row in cur.fetchall()]


def count(conn) -> int:
    """How many events are parked, of every app."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM parked_events")
        return cur.fetchone()[0]


def exported(conn, ids: list[int] | None = None) -> Iterator[dict]:
    """Every parked event (or those with these ids), oldest first, with its event as JSON."""
    with conn, conn.cursor(name="parked_export", cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.itersize = 500
        cur.execute(
            f"SELECT {_COLUMNS}, event FROM parked_events"
            " WHERE %(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s) ORDER BY id",
            {"ids": ids},
        )
        for row in cur:
            yield {**_plain(row), "event": json.loads(row["event"])}


def replay(conn, ids: list[int] | None = None, chunk: int = 500) -> dict:
    """Store parked events again (all, or these ids) after a fix, a chunk per transaction.

    Stored ones leave parked_events; an event already stored (same app, batch and sequence, or
    the same Moesif transaction_id) counts as stored, since nothing more is to be written.
    Those Postgres refuses again stay parked with the new reason.
    """
    stored: list[int] = []
    still: list[dict] = []
    after = 0
    while True:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT id, kind, app_id, batch::text, sequence, received_ms, event FROM parked_events
                   WHERE id > %(after)s AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
                   ORDER BY id LIMIT %(chunk)s FOR UPDATE""",
                {"after": after, "ids": ids, "chunk": chunk},
            )
            rows = cur.fetchall()
            if not rows:
                break
            after = rows[-1][0]
            items = {
                row_id: Pending(kind, app_id, batch, sequence, received_ms, json.loads(event))
                for row_id, kind, app_id, batch, sequence, received_ms, event in rows
            }
            _, parked = store_or_park(conn, list(items.values()))
            again = {_identity(p.item): p.reason for p in parked}
            still += [
                {"id": row_id, "reason": again[_identity(item)]}
                for row_id, item in items.items()
                if _identity(item) in again
            ]
            done = [row_id for row_id, item in items.items() if _identity(item) not in again]
            cur.execute("DELETE FROM parked_events WHERE id = ANY(%s)", (done,))
            stored += done
    return {"stored": stored, "still_parked": still, "not_found": _missing(ids, stored, still)}


def drop(conn, ids: list[int]) -> dict:
    """Delete these parked events for good (an operator's decision)."""
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM parked_events WHERE id = ANY(%s) RETURNING id", (ids,))
        dropped = sorted(row[0] for row in cur.fetchall())
    return {"dropped": dropped, "not_found": sorted(set(ids) - set(dropped))}


def _identity(item: Pending) -> tuple:
    """What makes a parked event unique: the order of parked_events' unique key."""
    return (item.app_id, item.kind, item.batch, item.sequence)


def _missing(ids, stored, still) -> list[int]:
    return sorted(set(ids or ()) - set(stored) - {s["id"] for s in still})


def _plain(row) -> dict:
    return {**row, "parked_at": row["parked_at"].isoformat()}
