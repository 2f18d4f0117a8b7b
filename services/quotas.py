"""Per-app limits on what a tenant holds at once (render jobs, connectors, pipelines).

Counted under a lock on the app's row, so that concurrent requests of one app cannot all slip
under a limit: each creator waits for the previous one's transaction to end, then counts.
"""

# What each limit counts: fixed statements, never built from input.
OPEN_RENDER_JOBS = "SELECT count(*) FROM render_jobs WHERE app_id = %s AND status IN ('queued', 'running')"
CONNECTORS = "SELECT count(*) FROM connectors WHERE app_id = %s"
PIPELINES = "SELECT count(*) FROM pipelines WHERE app_id = %s"


def at_limit(conn, app_id: int, counted: str, limit: int) -> bool:
    """True when the app already holds `limit` of what `counted` counts.

    Call it in the transaction that then creates one: the lock it takes on the app's row holds
    the app's other creators back until that transaction ends.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM apps WHERE id = %s FOR NO KEY UPDATE", (app_id,))
        cur.execute(counted, (app_id,))
        row = cur.fetchone()
        return row is not None and row[0] >= limit
