"""Delivering a pipeline's stored events to its connector: reading, leases, cursor, retries.

Positions are (xid, id): the writing transaction's id, then the row's. A reader only takes rows
whose transaction is older than the oldest transaction still running (the snapshot's xmin), so
every row it could ever see at or below a position is already visible: the cursor never jumps
over a row that commits late. See docs/pipelines.md.
"""

import random
from dataclasses import dataclass

from psycopg2.extras import Json

# Leases and cursor positions need not wait for the WAL flush: if a crash loses the last save,
# the batch after the surviving position is delivered again, which at-least-once allows. This
# takes a disk flush off every batch.
_NO_FLUSH = "SET LOCAL synchronous_commit = off"

# The start of every stream: rows stored before migration 0006 have xid 0.
ORIGIN = ("0", 0)

_DOCS = {
    "events": """json_build_object(
        'id', r.id, 'batch', r.batch, 'sequence', r.sequence, 'customer', r.customer,
        'product', r.product, 'type', r.type, 'timestamp', r.timestamp, 'context', r.context,
        'receivedAt', r.received_at)""",
    "api_calls": """json_build_object(
        'id', r.id, 'batch', r.batch, 'sequence', r.sequence, 'request', r.request,
        'response', r.response, 'user_id', r.user_id, 'company_id', r.company_id,
        'session_token', r.session_token, 'direction', r.direction, 'weight', r.weight,
        'transaction_id', r.transaction_id, 'tags', r.tags, 'metadata', r.metadata,
        'receivedAt', r.received_at)""",
}


@dataclass
class Pipeline:
    """What a runner needs of a pipeline it holds the lease of."""

    id: str
    app_id: int
    module: str
    generation: int
    driver: str
    config: dict


@dataclass
class Batch:
    docs: list[str]
    first: tuple[str, int]
    last: tuple[str, int]
    age: float  # seconds since the first event was stored


def read_batch(conn, module: str, app_id: int, after: tuple[str, int], limit: int) -> Batch | None:
    """The next events after `after`, in (xid, id) order, only from finished transactions."""
    with conn.cursor() as cur:
        # Walk the (app_id, xid, id) index in order and stop after `limit` rows. Left to itself,
        # the planner sometimes (statistics that lag a backfill's inserts) fetches every row after
        # the position, builds its JSON and sorts it, for each batch: a backfill quadratic in its
        # backlog. Without a sort to fall back on, it takes the ordered index scan.
        cur.execute("SET LOCAL enable_sort = off")
        cur.execute(
            f"""
            SELECT r.xid::text AS row_xid, r.id,
                   EXTRACT(EPOCH FROM clock_timestamp() - r.stored_at)::float8,
                   {_DOCS[module]}::text
            FROM {module} r
            WHERE r.app_id = %(app)s AND (r.xid, r.id) > (%(xid)s::xid8, %(id)s)
              AND r.xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
            ORDER BY r.xid, r.id
            LIMIT %(n)s""",
            {"app": app_id, "xid": after[0], "id": after[1], "n": limit},
        )
        rows = cur.fetchall()
    if not rows:
        return None
    return Batch(
        docs=[r[3] for r in rows],
        first=(rows[0][0], rows[0][1]),
        last=(rows[-1][0], rows[-1][1]),
        age=rows[0][2],
    )


def mark_runner_alive(conn, owner: str, lease_seconds: float) -> None:
    """Say this runner is alive, and forget runners not seen for a lease period (they died)."""
    with conn.cursor() as cur:
        cur.execute(_NO_FLUSH)
        cur.execute(
            """INSERT INTO pipeline_runners (owner, seen_at) VALUES (%s, now())
                       ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at""",
            (owner,),
        )
        cur.execute(
            "DELETE FROM pipeline_runners WHERE seen_at < now() - %s * interval '1 second'", (lease_seconds,)
        )


def fair_share(conn, lease_seconds: float) -> int:
    """How many running pipelines one runner may hold: ceil(running / live runners).

    The shares add up to at least the running pipelines, so every one of them has room somewhere.
    """
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT (SELECT count(*) FROM pipelines WHERE label IN ('INIT', 'READY')),
                   (SELECT count(*) FROM pipeline_runners
                    WHERE seen_at >= now() - %s * interval '1 second')""",
            (lease_seconds,),
        )
        running, live = cur.fetchone()
    return -(-running // max(live, 1))


def claim(conn, owner: str, lease_seconds: float, limit: int) -> list[Pipeline]:
    """Take (or keep) the leases of up to `limit` running pipelines that are due.

    Its own leases come first, so a runner keeps what it has rather than trading pipelines with
    the others every round. SKIP LOCKED lets runners claim side by side. A lease nobody renews
    lapses, so the pipelines of a worker that died move to another.
    """
    with conn.cursor() as cur:
        cur.execute(_NO_FLUSH)
        cur.execute(
            """
            UPDATE pipelines p
            SET lease_owner = %(owner)s, lease_expires = now() + %(lease)s * interval '1 second'
            FROM (SELECT id FROM pipelines
                  WHERE label IN ('INIT', 'READY') AND next_attempt_at <= now()
                    AND (lease_owner IS NULL OR lease_owner = %(owner)s OR lease_expires < now())
                  ORDER BY lease_owner IS DISTINCT FROM %(owner)s, next_attempt_at
                  LIMIT %(limit)s
                  FOR UPDATE SKIP LOCKED) due,
                 connectors c
            WHERE p.id = due.id AND c.id = p.connector_id
            RETURNING p.id::text, p.app_id, p.module, p.generation, c.driver, c.config""",
            {"owner": owner, "lease": lease_seconds, "limit": limit},
        )
        return [Pipeline(*r) for r in cur.fetchall()]


def take_turn(
    conn, pipeline: Pipeline, owner: str, lease_seconds: float
) -> tuple[str, tuple[str, int]] | None:
    """Renew the lease of this generation of a running pipeline and return (label, saved position);
    None once `owner` lost the lease, or the pipeline was paused, stopped, reset or deleted.

    The position is read here, under the lease, rather than kept by the runner: only the lease
    holder moves it, so this is where the last holder left off. The row stays locked until the
    transaction (which reads the batch) commits, so the position cannot move in between.
    """
    with conn.cursor() as cur:
        cur.execute(_NO_FLUSH)
        cur.execute(
            """UPDATE pipelines SET lease_expires = now() + %s * interval '1 second'
                       WHERE id = %s AND generation = %s AND lease_owner = %s
                         AND label IN ('INIT', 'READY')
                       RETURNING label, cursor_xid::text, cursor_id""",
            (lease_seconds, pipeline.id, pipeline.generation, owner),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return row[0], ((row[1], row[2]) if row[2] is not None else ORIGIN)


def save_position(conn, pipeline: Pipeline, owner: str, batch: Batch, lease_seconds: float) -> str | None:
    """Record a delivered batch and renew the lease; return the pipeline's label now.

    None means the batch's position must not be kept: the pipeline was reset or deleted, or its
    lease went to another runner. Saved even when paused meanwhile: those events did arrive.
    """
    with conn.cursor() as cur:
        cur.execute(_NO_FLUSH)
        cur.execute(
            """
            UPDATE pipelines
            SET cursor_xid = %(xid)s::xid8, cursor_id = %(id)s, delivered = delivered + %(n)s, failures = 0,
                lease_expires = now() + %(lease)s * interval '1 second'
            WHERE id = %(pipeline)s AND generation = %(generation)s AND lease_owner = %(owner)s
            RETURNING label""",
            {
                "xid": batch.last[0],
                "id": batch.last[1],
                "n": len(batch.docs),
                "lease": lease_seconds,
                "pipeline": pipeline.id,
                "generation": pipeline.generation,
                "owner": owner,
            },
        )
        row = cur.fetchone()
        return row[0] if row else None


def mark_ready(conn, pipeline: Pipeline, owner: str) -> bool:
    """INIT -> READY once the backfill has caught up."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE pipelines SET state = %s, label = 'READY'
                       WHERE id = %s AND generation = %s AND lease_owner = %s AND label = 'INIT'""",
            (Json({"label": "READY"}), pipeline.id, pipeline.generation, owner),
        )
        return cur.rowcount == 1


def backoff_seconds(failures: int, ceiling: float) -> float:
    """Exponential from 0.5 s, jittered so that pipelines failing together spread their retries."""
    return min(ceiling, 0.5 * 2 ** min(failures, 20) * random.uniform(0.8, 1.2))


def record_failure(conn, pipeline: Pipeline, owner: str, error: str, ceiling: float) -> None:
    """Keep the error visible and schedule the retry of the same batch."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT failures FROM pipelines WHERE id = %s AND lease_owner = %s FOR UPDATE",
            (pipeline.id, owner),
        )
        row = cur.fetchone()
        if row is None:
            return
        cur.execute(
            """UPDATE pipelines
                       SET failures = failures + 1, last_error = %s, last_error_at = now(),
                           next_attempt_at = now() + %s * interval '1 second'
                       WHERE id = %s""",
            (error[:2000], backoff_seconds(row[0], ceiling), pipeline.id),
        )


def give_back(conn, owner: str, keep: list[str]) -> None:
    """Release this runner's leases other than `keep` (what it claimed this round).

    That is what lies beyond its share now that more runners are alive, and pipelines it does not
    deliver anyway (paused, or waiting out a retry). Other runners take them on their next round;
    the cursor is on the row, so the next owner goes on from there.
    """
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE pipelines SET lease_owner = NULL, lease_expires = NULL
                       WHERE lease_owner = %s AND id <> ALL(%s::uuid[])""",
            (owner, keep),
        )


def release(conn, owner: str) -> None:
    """Give up every lease of a runner that stops cleanly, so others take over at once."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE pipelines SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = %s", (owner,)
        )
        cur.execute("DELETE FROM pipeline_runners WHERE owner = %s", (owner,))  # no longer counts in shares
