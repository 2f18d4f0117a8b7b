"""Live worker processes: each one's heartbeat row, and what `sluice status` and the ops page read.

A worker's main process upserts its row every HEARTBEAT_SECONDS with its running drain threads and
the SentTimestamp of the oldest message in their latest receives (NULL when they found the queue
empty). A row not refreshed for LIVE_SECONDS belongs to a dead worker; a worker that stops cleanly
deletes its own, and rows a day old are cleared by the others.
"""

HEARTBEAT_SECONDS = 5.0
LIVE_SECONDS = 30.0


def beat(conn, worker: str, drain_threads: int, oldest_sent_at: float | None) -> None:
    """Record that `worker` is alive (oldest_sent_at in epoch seconds, None when caught up)."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO worker_heartbeats (worker, drain_threads, oldest_sent_at)
                       VALUES (%s, %s, to_timestamp(%s))
                       ON CONFLICT (worker) DO UPDATE
                       SET drain_threads = excluded.drain_threads,
                           oldest_sent_at = excluded.oldest_sent_at, seen_at = now()""",
            (worker, drain_threads, oldest_sent_at),
        )
        cur.execute("DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 day'")


def leave(conn, worker: str) -> None:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM worker_heartbeats WHERE worker = %s", (worker,))


def live(conn) -> dict:
    """Live workers, their drain threads, and the drain's lag in seconds (None without a live worker).

    The lag is the age of the oldest message in the live workers' latest receives: what the drain
    last saw, not a peek at the queue (SQS has none). A standard queue does not hand out its oldest
    message first, so under a backlog this is a lower bound of the true oldest message's age.
    """
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*), coalesce(sum(drain_threads), 0),
                      greatest(0, coalesce(EXTRACT(EPOCH FROM now() - min(oldest_sent_at)), 0))::float8
               FROM worker_heartbeats WHERE seen_at >= now() - %s * interval '1 second'""",
            (LIVE_SECONDS,),
        )
        workers, threads, lag = cur.fetchone()
    return {"workers": workers, "drain_threads": int(threads), "drain_lag_seconds": lag if workers else None}
