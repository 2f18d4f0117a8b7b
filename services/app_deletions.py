"""The rest of an app's deletion: its files, stored events and parked events.

tenancy.delete_app removes the app's row (its keys stop working at once) and writes an
app_deletions row; the worker sweep then deletes the app's files and, in batches, its stored
events and API calls, and records how far it got. `sluice admin deletions` shows those rows.
"""

from datetime import datetime

# The tables of stored rows an app leaves behind (they carry app_id but no foreign key: the
# drain writes them without looking the app up).
STORED_TABLES = ("events", "api_calls", "parked_events")


def due(conn, wait_seconds: float) -> list[int]:
    """Unfinished deletions asked for at least wait_seconds ago, oldest first.

    The wait lets what was in flight for the app land first: renders notice their job is gone at
    their next heartbeat, and events accepted just before arrive through the queue.
    """
    with conn.cursor() as cur:
        cur.execute(
            """SELECT app_id FROM app_deletions
                       WHERE finished_at IS NULL AND requested_at < now() - make_interval(secs => %s)
                       ORDER BY requested_at""",
            (wait_seconds,),
        )
        return [row[0] for row in cur.fetchall()]


def delete_stored(conn, table: str, app_id: int, limit: int) -> int:
    """Delete up to `limit` of the app's rows of `table` (one of STORED_TABLES); how many went."""
    if table not in STORED_TABLES:
        raise ValueError(table)
    with conn.cursor() as cur:
        cur.execute(
            f"""DELETE FROM {table} WHERE (app_id, batch, sequence) IN (
                        SELECT app_id, batch, sequence FROM {table} WHERE app_id = %s LIMIT %s)""",
            (app_id, limit),
        )
        return cur.rowcount


def record(conn, app_id: int, files: int, rows: int, finished: bool, error: str | None = None) -> None:
    """Add what one sweep deleted; mark the deletion finished, or note why it stopped."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE app_deletions
                       SET files_deleted = files_deleted + %s, rows_deleted = rows_deleted + %s,
                           finished_at = CASE WHEN %s THEN now() END, last_error = %s
                       WHERE app_id = %s""",
            (files, rows, finished, error, app_id),
        )


def listing(conn, limit: int = 100) -> list[dict]:
    """The latest deletions, newest first, as operators see them."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT app_id, org_id, name, requested_at, files_deleted, rows_deleted, finished_at,
                              last_error
                       FROM app_deletions ORDER BY requested_at DESC LIMIT %s""",
            (limit,),
        )
        columns = [c.name for c in cur.description]
        found = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    for deletion in found:
        deletion["state"] = "finished" if deletion["finished_at"] else "pending"
        for name in ("requested_at", "finished_at"):
            when: datetime | None = deletion[name]
            deletion[name] = when.isoformat() if when else None
    return found
