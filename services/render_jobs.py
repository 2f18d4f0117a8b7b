"""Render jobs (reports and exports) in Postgres: the job rows, their files, every state change.

The control API creates jobs and reads them; workers claim, heartbeat and finish them; the beat
sweep retries the stale ones and expires old exports. Every state change is a compare-and-set,
so a redelivered task or a worker that lost its claim changes nothing.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.errors
from psycopg2.extras import Json

from shared.channels import RENDER_TASK

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


def enqueue(celery_app, job_id: str) -> None:
    """Send the render task by name: the sender need not import the worker's task code."""
    celery_app.send_task(RENDER_TASK, args=[job_id])


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


def claim(conn, job_id: str, stale_seconds: float, max_attempts: int) -> Job | None:
    """Take a queued job, or a running one whose worker went silent; None when another has it.

    The new claim id marks this attempt: a worker that lost its claim finds out at its next
    heartbeat and stops, so two workers never both finish a job.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"""UPDATE render_jobs
                        SET status = 'running', claim = %s, attempts = attempts + 1, rows_written = 0,
                            heartbeat_at = now(), started_at = coalesce(started_at, now())
                        WHERE id = %s AND attempts < %s
                          AND (status = 'queued'
                               OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => %s)))
                        RETURNING {_COLUMNS}""",
            (str(uuid.uuid4()), job_id, max_attempts, stale_seconds),
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


def fail_exhausted(conn, stale_seconds: float, max_attempts: int) -> list[tuple[str, str]]:
    """Jobs whose workers died max_attempts times: fail them rather than kill yet another worker.

    Returns (id, kind) of each."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs
                       SET status = 'failed', completed_at = now(),
                           error = 'the worker rendering it was lost ' || attempts || ' times'
                       WHERE status = 'running' AND attempts >= %s
                         AND heartbeat_at < now() - make_interval(secs => %s)
                       RETURNING id::text, kind""",
            (max_attempts, stale_seconds),
        )
        return [(row[0], row[1]) for row in cur.fetchall()]


def requeue_stale(conn, stale_seconds: float) -> list[str]:
    """Running jobs whose heartbeat went stale, and queued jobs whose task may have been lost
    (the control API committed but Redis did not take the task): back to queued, to be enqueued
    again by the caller after commit."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs SET status = 'queued', claim = NULL, enqueued_at = now()
                       WHERE (status = 'running' AND heartbeat_at < now() - make_interval(secs => %s))
                          OR (status = 'queued' AND enqueued_at < now() - make_interval(secs => %s))
                       RETURNING id::text""",
            (stale_seconds, stale_seconds),
        )
        return [row[0] for row in cur.fetchall()]


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
