"""Render jobs (reports and exports) in Postgres: the job rows, their files, every state change.

The control API creates jobs and reads them; workers claim, heartbeat and finish them; the beat
sweep retries the stale ones and expires old exports. Every state change is a compare-and-set,
so a redelivered task or a worker that lost its claim changes nothing.

A render task names no job: each one claims the next job in fair order (claim_next), so one app's
backlog cannot hold back another app's report. One task is sent per job; the sweep sends only the
tasks that queued jobs lack (jobs queued minus tasks waiting), so no job is ever sent twice.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.errors
from psycopg2.extras import Json

from shared.channels import RENDER_QUEUE, RENDER_TASK

_COLUMNS = """id::text, app_id, kind, entity_type, filter, status, rows_written, attempts, claim::text,
              created_at, completed_at, expires_at"""


@dataclass
class FileRow:
    part: int
    s3_key: str
    size_bytes: int
    row_count: int
    sha256: str


@dataclass
class Job:
    id: str
    app_id: int
    kind: str  # 'report' | 'export'
    entity_type: str  # 'Event' | 'ApiCall'
    filter: dict
    status: str  # queued, running, done, failed, timeout, expired
    rows_written: int
    attempts: int
    claim: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    files: list[FileRow] = field(default_factory=list)


class OpenExportExists(Exception):
    """Mews allows one Pending or Processing export per entity type."""


def enqueue(celery_app) -> None:
    """Send one render task, by name (the sender need not import the worker's task code), to the
    render queue. The worker that takes it renders whichever job is next (claim_next)."""
    celery_app.send_task(RENDER_TASK, queue=RENDER_QUEUE)


def waiting_tasks(celery_app) -> int:
    """Render tasks in the broker that no worker has taken yet."""
    with celery_app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(queue=RENDER_QUEUE).message_count


def create(
    conn,
    app_id: int,
    kind: str,
    entity_type: str,
    job_filter: dict | None = None,
    client_token: str | None = None,
    client: str | None = None,
) -> Job:
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"""INSERT INTO render_jobs (id, app_id, kind, entity_type, filter, client_token, client)
                            VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
                (str(uuid.uuid4()), app_id, kind, entity_type, Json(job_filter or {}), client_token, client),
            )
            return Job(*cur.fetchone())
    except psycopg2.errors.UniqueViolation:
        raise OpenExportExists(entity_type) from None


def get(conn, app_id: int, kind: str, job_id: str) -> Job | None:
    """One job of this app, with its files; another app's job is as absent as an unknown one."""
    found = get_many(conn, app_id, kind, [job_id])
    return found[0] if found else None


def get_many(conn, app_id: int, kind: str, job_ids: list[str]) -> list[Job]:
    """The jobs among job_ids that belong to this app, in the order asked, with their files."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM render_jobs
                        WHERE app_id = %s AND kind = %s AND id = ANY(%s::uuid[])""",
            (app_id, kind, job_ids),
        )
        by_id = {row[0]: Job(*row) for row in cur.fetchall()}
        cur.execute(
            """SELECT job_id::text, part, s3_key, size_bytes, row_count, sha256 FROM render_files
                       WHERE job_id = ANY(%s::uuid[]) ORDER BY job_id, part""",
            (list(by_id),),
        )
        for job_id, *file_row in cur.fetchall():
            by_id[job_id].files.append(FileRow(*file_row))
    return [by_id[i] for i in dict.fromkeys(job_ids) if i in by_id]


# What a claim writes. The new claim id marks this attempt: a worker that lost its claim finds out
# at its next heartbeat and stops, so two workers never both finish a job. started_at is when the
# latest attempt started: claim_next serves first the app it was longest ago for.
_CLAIMED = """status = 'running', claim = %(claim)s, attempts = attempts + 1, rows_written = 0,
              heartbeat_at = now(), started_at = now()"""


def claim(conn, job_id: str, stale_seconds: float, max_attempts: int) -> Job | None:
    """Take this queued job, or this running one whose worker went silent; None when another has it."""
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE render_jobs SET {_CLAIMED}
                        WHERE id = %(id)s AND attempts < %(max_attempts)s
                          AND (status = 'queued'
                               OR (status = 'running'
                                   AND heartbeat_at < now() - make_interval(secs => %(stale)s)))
                        RETURNING {_COLUMNS}""",
            {"claim": str(uuid.uuid4()), "id": job_id, "max_attempts": max_attempts, "stale": stale_seconds},
        )
        row = cur.fetchone()
        return Job(*row) if row else None


# The next job, fairly across apps: the app with the fewest running renders first; among those, the
# app whose latest render started longest ago (one never served before all others); then that
# app's oldest queued job. SKIP LOCKED: concurrent claimers take different jobs, never wait.
_NEXT_JOB = """
WITH running AS (SELECT app_id, count(*) AS jobs FROM render_jobs WHERE status = 'running' GROUP BY app_id),
     turns AS MATERIALIZED (  -- once per app, not once per queued job
         SELECT w.app_id, coalesce(r.jobs, 0) AS running,
                (SELECT max(started_at) FROM render_jobs s WHERE s.app_id = w.app_id) AS last_served
         FROM (SELECT DISTINCT app_id FROM render_jobs WHERE status = 'queued') w
         LEFT JOIN running r ON r.app_id = w.app_id)
SELECT j.id FROM render_jobs j JOIN turns t ON t.app_id = j.app_id
WHERE j.status = 'queued' AND j.attempts < %(max_attempts)s
ORDER BY t.running, t.last_served NULLS FIRST, j.created_at
LIMIT 1
FOR UPDATE OF j SKIP LOCKED"""


def claim_next(conn, max_attempts: int) -> Job | None:
    """Take the next queued job in fair order; None when no job waits (or all are being taken)."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE render_jobs SET {_CLAIMED} WHERE id = ({_NEXT_JOB}) RETURNING {_COLUMNS}",
            {"claim": str(uuid.uuid4()), "max_attempts": max_attempts},
        )
        row = cur.fetchone()
        return Job(*row) if row else None


def heartbeat(conn, job: Job, rows_written: int) -> bool:
    """Record progress; False when this attempt no longer holds the job."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs SET rows_written = %s, heartbeat_at = now()
                       WHERE id = %s AND claim = %s AND status = 'running'""",
            (rows_written, job.id, job.claim),
        )
        return cur.rowcount == 1


def finish(
    conn,
    job: Job,
    status: str,
    rows_written: int,
    files: Sequence[FileRow] = (),
    expires_seconds: int | None = None,
    error: str | None = None,
) -> bool:
    """End this attempt: the status and, in the same transaction, the files that became visible."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs
                       SET status = %s, rows_written = %s, error = %s, completed_at = now(),
                           expires_at = now() + make_interval(secs => %s)
                       WHERE id = %s AND claim = %s AND status = 'running'""",
            (status, rows_written, error, expires_seconds, job.id, job.claim),
        )
        if cur.rowcount != 1:
            return False
        cur.execute("DELETE FROM render_files WHERE job_id = %s", (job.id,))
        for f in files:
            cur.execute(
                """INSERT INTO render_files (job_id, part, s3_key, size_bytes, row_count, sha256)
                           VALUES (%s, %s, %s, %s, %s, %s)""",
                (job.id, f.part, f.s3_key, f.size_bytes, f.row_count, f.sha256),
            )
        return True


def exhausted(conn, stale_seconds: float, max_attempts: int) -> list[Job]:
    """Silent jobs whose workers died max_attempts times: to fail rather than kill yet another worker."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM render_jobs
                        WHERE status = 'running' AND attempts >= %s
                          AND heartbeat_at < now() - make_interval(secs => %s)""",
            (max_attempts, stale_seconds),
        )
        return [Job(*row) for row in cur.fetchall()]


def requeue_stale(conn, stale_seconds: float) -> list[str]:
    """Running jobs whose heartbeat went stale (their worker died): back to queued."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs SET status = 'queued', claim = NULL
                       WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %s)
                       RETURNING id::text""",
            (stale_seconds,),
        )
        return [row[0] for row in cur.fetchall()]


def count_queued(conn, older_than_seconds: float) -> int:
    """Queued jobs created at least this long ago: younger ones may not have sent their task yet."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FROM render_jobs
                       WHERE status = 'queued' AND created_at < now() - make_interval(secs => %s)""",
            (older_than_seconds,),
        )
        return cur.fetchone()[0]


def status(conn, job_id: str) -> str | None:
    """The job's status now; None once it is gone (its app was deleted)."""
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM render_jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
        return row[0] if row else None


def expiring(conn, limit: int = 100) -> list[Job]:
    """Finished jobs past their expiry whose files are still to be deleted."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM render_jobs
                        WHERE status = 'done' AND expires_at <= now() ORDER BY expires_at LIMIT %s""",
            (limit,),
        )
        return [Job(*row) for row in cur.fetchall()]


def mark_expired(conn, job_id: str) -> None:
    with conn.cursor() as cur:
        cur.execute("UPDATE render_jobs SET status = 'expired' WHERE id = %s AND status = 'done'", (job_id,))
        cur.execute("DELETE FROM render_files WHERE job_id = %s", (job_id,))
