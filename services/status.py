"""Is Sluice healthy? The facts `sluice status` prints and the control API's ops page shows.

Plain functions over a Postgres connection and an SQS client. Every per-app figure takes `apps`:
a list of app ids to scope it to (the ops page: the apps of a user's organizations), or None for
the whole deployment (the operator's command). Queue depths and live workers are fleet facts.
"""

from datetime import UTC, datetime, timedelta

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from services import aws, fleet, parking

DEFAULT_MAX_LAG_SECONDS = 120.0  # as the SluiceDrainLagging alert
KINDS = ("report", "export")
_APPS = "(%(apps)s::bigint[] IS NULL OR app_id = ANY(%(apps)s))"
_LAST_HOUR = "completed_at > now() - interval '1 hour'"


# --- SQS ---------------------------------------------------------------------------------------


def queue_depth(sqs, url: str) -> dict[str, int]:
    """Messages waiting (visible) and received but not yet deleted (in flight), as SQS counts them."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(attrs["ApproximateNumberOfMessages"]),
        "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    }


def queues(settings, sqs) -> dict[str, dict[str, int]]:
    return {
        role: queue_depth(sqs, aws.queue_url(sqs, name))
        for role, name in (("events", settings.events_queue), ("dlq", settings.events_dlq))
    }


# --- Postgres ----------------------------------------------------------------------------------


def stored_per_second(conn, apps: list[int] | None = None, seconds: int = 60) -> float:
    """Events and API calls stored per second over the last `seconds`."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT (SELECT count(*) FROM events WHERE stored_at > now() - %(s)s * interval '1 second'
                               AND {_APPS})
                     + (SELECT count(*) FROM api_calls WHERE stored_at > now() - %(s)s * interval '1 second'
                               AND {_APPS})""",
            {"s": seconds, "apps": apps},
        )
        return cur.fetchone()[0] / seconds


def stored_per_minute(conn, apps: list[int] | None, minutes: int = 60) -> list[dict]:
    """Events and API calls stored in each of the last `minutes` minutes, oldest first; the last
    is the minute under way."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT date_trunc('minute', now()), minute, sum(n)::bigint FROM (
                    SELECT date_trunc('minute', stored_at) AS minute, count(*) AS n FROM events
                    WHERE stored_at >= date_trunc('minute', now()) - %(back)s * interval '1 minute'
                      AND {_APPS} GROUP BY 1
                    UNION ALL
                    SELECT date_trunc('minute', stored_at), count(*) FROM api_calls
                    WHERE stored_at >= date_trunc('minute', now()) - %(back)s * interval '1 minute'
                      AND {_APPS} GROUP BY 1
                ) counted GROUP BY minute""",
            {"back": minutes - 1, "apps": apps},
        )
        rows = cur.fetchall()
        if not rows:
            cur.execute("SELECT date_trunc('minute', now())")
            rows = [(cur.fetchone()[0], None, 0)]
    now = rows[0][0]
    counts = {minute: n for _, minute, n in rows if minute is not None}
    start = now - timedelta(minutes=minutes - 1)
    series = [start + timedelta(minutes=i) for i in range(minutes)]
    return [{"minute": _iso(m), "stored": counts.get(m, 0)} for m in series]


def render_jobs(conn, apps: list[int] | None = None) -> dict[str, dict[str, int]]:
    """Report and export jobs queued and running now, and done and failed in the last hour."""
    found = {kind: {"queued": 0, "running": 0, "done_last_hour": 0, "failed_last_hour": 0} for kind in KINDS}
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT kind, count(*) FILTER (WHERE status = 'queued'),
                       count(*) FILTER (WHERE status = 'running'),
                       count(*) FILTER (WHERE status IN ('done', 'expired') AND {_LAST_HOUR}),
                       count(*) FILTER (WHERE status IN ('failed', 'timeout') AND {_LAST_HOUR})
                FROM render_jobs
                WHERE (status IN ('queued', 'running') OR {_LAST_HOUR}) AND {_APPS}
                GROUP BY kind""",
            {"apps": apps},
        )
        for kind, queued, running, done, failed in cur.fetchall():
            found[kind] = {
                "queued": queued,
                "running": running,
                "done_last_hour": done,
                "failed_last_hour": failed,
            }
    return found


def recent_jobs(conn, apps: list[int], limit: int = 10) -> list[dict]:
    """The latest report and export jobs of these apps, newest first."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT id::text, app_id, kind, status, rows_written, created_at, completed_at, error
                FROM render_jobs WHERE {_APPS} ORDER BY created_at DESC LIMIT %(limit)s""",
            {"apps": apps, "limit": limit},
        )
        return [
            {
                "id": job_id,
                "app_id": app_id,
                "kind": kind,
                "status": status,
                "rows": rows,
                "created_at": _iso(created),
                "completed_at": _iso(completed) if completed else None,
                "error": error,
            }
            for job_id, app_id, kind, status, rows, created, completed, error in cur.fetchall()
        ]


def oldest_unfinished_export(conn, apps: list[int] | None = None) -> dict | None:
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT id::text, app_id, status, EXTRACT(EPOCH FROM now() - created_at)::float8
                FROM render_jobs WHERE kind = 'export' AND status IN ('queued', 'running') AND {_APPS}
                ORDER BY created_at LIMIT 1""",
            {"apps": apps},
        )
        row = cur.fetchone()
    return None if row is None else {"id": row[0], "app_id": row[1], "status": row[2], "age_seconds": row[3]}


# The oldest stored row after a pipeline's cursor: its delivery lag (NULL when caught up).
_OLDEST_UNDELIVERED = """
    LEFT JOIN LATERAL (
        SELECT r.stored_at FROM {table} r
        WHERE p.module = '{table}' AND r.app_id = p.app_id
          AND (r.xid, r.id) > (coalesce(p.cursor_xid, '0'), coalesce(p.cursor_id, 0))
        ORDER BY r.xid, r.id LIMIT 1
    ) {table} ON true"""


def pipelines(conn, apps: list[int] | None = None) -> list[dict]:
    """Every pipeline with its state and delivery lag: the age of its oldest undelivered row."""
    with conn.cursor() as cur:
        # As the runners' reads do (read_batch in services/worker/delivery.py): walk the index to
        # each pipeline's next row, never let lagging statistics fetch and sort a whole backlog.
        cur.execute("SET LOCAL enable_sort = off")
        cur.execute(
            f"""SELECT p.id::text, p.app_id, p.module, p.label, c.driver, p.delivered, p.failures,
                       p.last_error,
                       EXTRACT(EPOCH FROM now() - coalesce(events.stored_at, api_calls.stored_at))::float8
                FROM pipelines p JOIN connectors c ON c.id = p.connector_id
                {_OLDEST_UNDELIVERED.format(table="events")}
                {_OLDEST_UNDELIVERED.format(table="api_calls")}
                WHERE (%(apps)s::bigint[] IS NULL OR p.app_id = ANY(%(apps)s))
                ORDER BY p.app_id, p.seq""",
            {"apps": apps},
        )
        rows = cur.fetchall()
        cur.execute("RESET enable_sort")  # the caller's next queries plan as usual
        return [
            {
                "id": pipeline_id,
                "app_id": app_id,
                "module": module,
                "state": label,
                "driver": driver,
                "delivered": delivered,
                "failures": failures,
                "last_error": last_error,
                "lag_seconds": max(0.0, lag) if lag is not None else 0.0,
            }
            for pipeline_id, app_id, module, label, driver, delivered, failures, last_error, lag in rows
        ]


def pipelines_by_state(found: list[dict]) -> dict[str, dict]:
    """{state: {count, max_lag_seconds}} over pipelines()."""
    states: dict[str, dict] = {}
    for p in found:
        state = states.setdefault(p["state"], {"count": 0, "max_lag_seconds": 0.0})
        state["count"] += 1
        state["max_lag_seconds"] = max(state["max_lag_seconds"], p["lag_seconds"])
    return states


# --- the whole picture ---------------------------------------------------------------------------


def collect(settings, sqs, max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS) -> dict:
    """Everything `sluice status` reports, with what needs attention; a part that cannot be
    reached (Postgres, SQS) is reported as such rather than failing the rest."""
    status: dict = {"at": _iso(datetime.now(UTC)), "errors": {}}
    try:
        status.update(queues(settings, sqs))
    except (BotoCoreError, ClientError) as exc:
        status["errors"]["sqs"] = str(exc)
    try:
        conn = psycopg2.connect(settings.database_url, connect_timeout=5)
        try:
            with conn:
                status["drain"] = fleet.live(conn)
                status["parked_events"] = parking.count(conn)
                status["stored_per_second"] = stored_per_second(conn)
                status["render_jobs"] = render_jobs(conn)
                status["pipelines"] = pipelines_by_state(pipelines(conn))
                status["oldest_unfinished_export"] = oldest_unfinished_export(conn)
        finally:
            conn.close()
    except psycopg2.Error as exc:
        status["errors"]["postgres"] = str(exc).strip()
    status["attention"] = attention(status, max_lag_seconds)
    status["healthy"] = not status["attention"]
    return status


def attention(status: dict, max_lag_seconds: float) -> list[str]:
    """What an operator should look at, in words; empty when all is well."""
    found = [f"{part} not reachable: {error}" for part, error in status["errors"].items()]
    dlq = status.get("dlq")
    if dlq and dlq["visible"] + dlq["in_flight"]:
        parked = dlq["visible"] + dlq["in_flight"]
        found.append(f"the dead-letter queue holds {parked} messages (sluice dlq list)")
    if status.get("parked_events"):
        found.append(f"events parked: {status['parked_events']} (sluice dlq list)")
    drain = status.get("drain")
    if drain and not drain["workers"]:
        found.append("no live worker: nothing drains the events queue")
    elif drain and drain["drain_lag_seconds"] > max_lag_seconds:
        found.append(f"drain lag {drain['drain_lag_seconds']:.0f} s is over {max_lag_seconds:.0f} s")
    return found


def text(status: dict) -> str:
    """The status as a person reads it on a terminal."""
    lines = [f"Sluice {'healthy' if status['healthy'] else 'NEEDS ATTENTION'}   {status['at']}"]
    lines += [f"  ! {item}" for item in status["attention"]]

    def line(name: str, value: str) -> None:
        lines.append(f"{name:<16}{value}")

    if "events" in status:
        q, d = status["events"], status["dlq"]
        line("events queue", f"{q['visible']} waiting, {q['in_flight']} in flight")
        line("dead letters", str(d["visible"] + d["in_flight"]))
    if "parked_events" in status:
        line("parked events", str(status["parked_events"]))
    if "drain" in status:
        drain = status["drain"]
        lag = "-" if drain["drain_lag_seconds"] is None else f"{drain['drain_lag_seconds']:.1f} s"
        line("drain", f"lag {lag}; {drain['workers']} live workers, {drain['drain_threads']} drain threads")
        line("stored", f"{status['stored_per_second']:.1f} events/s over the last minute")
        for kind, jobs in status["render_jobs"].items():
            line(
                kind + "s",
                f"{jobs['queued']} queued, {jobs['running']} running, "
                f"{jobs['failed_last_hour']} failed in the last hour",
            )
        states = [
            f"{state} {s['count']} (worst lag {s['max_lag_seconds']:.1f} s)"
            for state, s in sorted(status["pipelines"].items())
        ]
        line("pipelines", ", ".join(states) or "none")
        oldest = status["oldest_unfinished_export"]
        if oldest:
            line("oldest export", f"{oldest['id']} (app {oldest['app_id']}), {oldest['status']}")
            lines[-1] += f" for {oldest['age_seconds']:.0f} s"
        else:
            line("oldest export", "none unfinished")
    return "\n".join(lines)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
