"""Rendering report and export jobs: rows streamed out of Postgres with COPY into files on S3.

Memory stays bounded whatever the row count: COPY hands over one row at a time and a file holds at
most two multipart parts in memory (one filling, one uploading). A file is visible (a row in
render_files, a link) only once its upload completed, in the transaction that finishes the job.

Files never outlive their job: a render that fails or times out deletes every object it wrote
and aborts its uploads before it records the failure; the sweep does the same for jobs it fails
and for exports that expire.
"""

import logging
import threading
import time
from contextlib import contextmanager, nullcontext

import psycopg2
import psycopg2.errors
from prometheus_client import Counter, Histogram

from services import render_jobs
from services.worker.s3files import S3File, abort_unfinished, discard
from shared.schemas.reports import REPORT_COLUMNS, SOURCE_PREFIX

log = logging.getLogger("sluice.render")

# Renders run in Celery's pool processes: the worker serves these through prometheus_client's
# multiprocess mode (services/worker/metrics.py).
RENDER_DURATION = Histogram(
    "sluice_render_duration_seconds",
    "time from claiming a job to finishing it, by kind (report, export)",
    ["kind"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600),
)
JOBS_FINISHED = Counter(
    "sluice_render_jobs_finished",
    "render jobs that ended, by kind and status (done, failed, timeout)",
    ["kind", "status"],
)
for _kind in ("report", "export"):  # at 0 from the start, so increase() sees the first failure
    for _status in ("done", "failed", "timeout"):
        JOBS_FINISHED.labels(_kind, _status)

# NULL filter parts fold away at plan time, so one readable statement serves every filter and
# (app_id, timestamp) still drives the scan. LIMIT one past the cap tells "over the cap" apart.
REPORT_SQL = """
COPY (
    SELECT customer, product, type, timestamp, context, batch, sequence
    FROM events
    WHERE app_id = %(app_id)s
      AND (%(customer)s::text IS NULL OR customer = %(customer)s)
      AND (%(product)s::text IS NULL OR product = %(product)s)
      AND (%(start)s::bigint IS NULL OR timestamp >= %(start)s)
      AND (%(end)s::bigint IS NULL OR timestamp < %(end)s)
    ORDER BY timestamp, batch, sequence
    LIMIT %(limit)s
) TO STDOUT WITH (FORMAT csv)"""

# JSON Lines straight out of COPY: CSV format with a quote and a delimiter that JSON text never
# holds raw (JSON escapes control characters), so each document is written as is, one per line,
# where the text format would have doubled every backslash.
_JSONL = "TO STDOUT WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"

EXPORT_SQL = {
    "Event": """
COPY (
    SELECT json_build_object('customer', customer, 'product', product, 'type', type,
                             'timestamp', timestamp, 'context', context,
                             'batch', batch, 'sequence', sequence)
    FROM events WHERE app_id = %(app_id)s ORDER BY id
) """
    + _JSONL,
    "ApiCall": """
COPY (
    SELECT json_build_object('request', request, 'response', response, 'user_id', user_id,
                             'company_id', company_id, 'session_token', session_token,
                             'direction', direction, 'weight', weight,
                             'transaction_id', transaction_id, 'tags', tags, 'metadata', metadata,
                             'blocked_by', blocked_by, 'batch', batch, 'sequence', sequence)
    FROM api_calls WHERE app_id = %(app_id)s ORDER BY id
) """
    + _JSONL,
}

CSV_HEADER = (",".join(REPORT_COLUMNS) + "\n").encode()


class LostClaim(Exception):
    """Another worker took the job over (this one was thought dead): stop, write nothing."""


class RenderTimeout(Exception):
    pass


class RowSink:
    """The file object COPY writes into; psycopg2 calls its `write` once per row.

    A report is one file, so `write` is that file's own write: the per-row work is one append.
    An export starts a new file whenever the current one would pass split_bytes.
    """

    def __init__(self, open_file, split_bytes: int | None):
        self.open_file, self.split_bytes = open_file, split_bytes
        self.done: list = []
        self.current: S3File | None = None
        self.room = 0  # bytes the current file takes before the next row starts a new one
        if split_bytes is None:
            self.write = self._next_file().write

    @property
    def rows(self) -> int:
        return sum(f.row_count for f in self.done) + (self.current.rows if self.current else 0)

    def write(self, row: bytes) -> None:
        f = self.current
        if len(row) > self.room and (f is None or f.rows):  # a row larger than a file gets one alone
            f = self._next_file()
        self.room -= len(row)
        f.write(row)

    def _next_file(self) -> S3File:
        if self.current is not None:
            self.done.append(self.current.close())
        self.current = self.open_file(len(self.done) + 1)
        self.room = self.split_bytes
        return self.current

    def close(self) -> list:
        if self.current is not None:
            self.done.append(self.current.close())
            self.current = None
        return self.done

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()


class RenderWatchdog:
    """Records progress every `every` seconds from a thread of its own, so that a scan that finds
    no matching row for minutes still proves the worker alive. On a lost claim or past the time
    limit it cancels the COPY, and the render raises why."""

    def __init__(self, beat, sink: RowSink, every: float, max_seconds: float):
        self.beat, self.sink, self.every = beat, sink, every
        self.deadline = time.monotonic() + max_seconds
        self.stopped_by: Exception | None = None
        self._stop = threading.Event()

    @contextmanager
    def watch(self, conn):
        thread = threading.Thread(target=self._run, args=(conn,), name="sluice-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        except psycopg2.errors.QueryCanceled:
            raise self.stopped_by or RenderTimeout("the query was cancelled") from None
        finally:
            self._stop.set()
            thread.join()
        if self.stopped_by:  # the query had sent every row before the cancel: the client was slower
            raise self.stopped_by

    def _run(self, conn) -> None:
        while not self._stop.wait(self.every):
            if time.monotonic() > self.deadline:
                self.stopped_by = RenderTimeout("over the time limit")
            else:
                try:
                    if self.beat(self.sink.rows):
                        continue
                    self.stopped_by = LostClaim()
                except psycopg2.Error:  # Postgres away: no beat; the COPY will fail or the sweep retry
                    log.warning("heartbeat failed", exc_info=True)
                    continue
            conn.cancel()
            return


def job_prefix(job: render_jobs.Job) -> str:
    """Where a job's files live: deterministic, so a retry overwrites rather than duplicates."""
    return f"{job.kind}s/{job.app_id}/{job.id}/"


def app_prefixes(app_id: int) -> list[str]:
    """Where all of an app's files live: every job_prefix of its jobs is under one of these."""
    return [f"{kind}s/{app_id}/" for kind in ("report", "export")]


def _opener(settings, s3, job: render_jobs.Job):
    prefix = job_prefix(job)
    if job.kind == "report":

        def open_report(part):
            return S3File(
                s3,
                settings.exports_bucket,
                f"{prefix}{SOURCE_PREFIX}{job.id}.csv",
                settings.render_part_bytes,
                "text/csv; charset=utf-8",
                header=CSV_HEADER,
            )

        return open_report

    def open_export(part):
        return S3File(
            s3,
            settings.exports_bucket,
            f"{prefix}{job.id}-{part}.jsonl",
            settings.render_part_bytes,
            "application/x-ndjson",
        )

    return open_export


def _statement(settings, job: render_jobs.Job) -> tuple[str, dict]:
    if job.kind == "report":
        f = job.filter
        return REPORT_SQL, {
            "app_id": job.app_id,
            "customer": f.get("customer"),
            "product": f.get("product"),
            "start": f.get("start"),
            "end": f.get("end"),
            "limit": settings.report_max_rows + 1,
        }
    return EXPORT_SQL[job.entity_type], {"app_id": job.app_id}


def run_next(settings, db, s3) -> str | None:
    """Claim the next job in fair order and render it; its final status, or None when none waits."""
    with db.connection() as conn:
        job = render_jobs.claim_next(conn, settings.job_max_attempts)
    if job is None:
        log.info("no queued job to render (another worker took it)")
        return None
    return render_claimed(settings, db, s3, job)


def run(settings, db, s3, job_id: str) -> str | None:
    """Claim and render this job; its final status, or None when it was not ours to render."""
    with db.connection() as conn:
        job = render_jobs.claim(conn, job_id, settings.job_stale_seconds, settings.job_max_attempts)
    if job is None:
        log.info("job %s is not claimable (done, or another worker has it)", job_id)
        return None
    return render_claimed(settings, db, s3, job)


def render_claimed(settings, db, s3, job: render_jobs.Job) -> str | None:
    """Render a job this worker claimed; its final status, or None when it lost the claim."""
    started = time.monotonic()
    abort_unfinished(s3, settings.exports_bucket, job_prefix(job))

    def beat(rows: int) -> bool:
        with db.connection() as conn:
            return render_jobs.heartbeat(conn, job, rows)

    sink = RowSink(
        _opener(settings, s3, job), settings.export_file_max_bytes if job.kind == "export" else None
    )
    watchdog = RenderWatchdog(beat, sink, settings.job_heartbeat_seconds, settings.render_max_seconds)
    sql, params = _statement(settings, job)
    status, error, files = "done", None, []
    try:
        _copy_out(settings.database_url, sql, params, sink, watchdog)
        if job.kind == "report" and sink.rows > settings.report_max_rows:  # the query's LIMIT stopped it
            raise RenderTimeout(f"more than {settings.report_max_rows} rows")
        files = sink.close()
    except LostClaim:
        sink.abort()
        log.warning("job %s: lost its claim; stopped", job.id)
        _abandon(settings, db, s3, job)
        return None
    except RenderTimeout as exc:
        sink.abort()
        status, error = ("timeout" if job.kind == "report" else "failed"), str(exc)
    except Exception as exc:  # recorded on the job: the client sees FAILED/Failed, not a hang
        sink.abort()
        log.exception("job %s failed", job.id)
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
    if status != "done":
        # Delete what this attempt wrote before the failure is recorded: if deleting fails, the job
        # goes stale and is retried rather than failed with files left behind. The beat first keeps
        # the job ours meanwhile (no attempt claims a job whose heartbeat is fresh).
        if not beat(sink.rows):
            log.warning("job %s: lost its claim; stopped", job.id)
            _abandon(settings, db, s3, job)
            return None
        discard(s3, settings.exports_bucket, job_prefix(job))

    rows = [
        render_jobs.FileRow(n, f.key, f.size_bytes, f.row_count, f.sha256) for n, f in enumerate(files, 1)
    ]
    with db.connection() as conn:
        finished = render_jobs.finish(
            conn,
            job,
            status,
            sink.rows,
            rows,
            settings.export_expiry_seconds if job.kind == "export" else None,
            error,
        )
    if not finished:
        log.warning("job %s: lost its claim before finishing", job.id)
        _abandon(settings, db, s3, job)
        return None
    RENDER_DURATION.labels(job.kind).observe(time.monotonic() - started)
    JOBS_FINISHED.labels(job.kind, status).inc()
    log.info("job %s %s: %d rows in %d files", job.id, status, sink.rows, len(rows))
    return status


def _abandon(settings, db, s3, job: render_jobs.Job) -> None:
    """This attempt lost its job. When no other attempt will write the job's files (the sweep
    failed the job, or the job went with its app), delete what this one wrote."""
    with db.connection() as conn:
        now = render_jobs.status(conn, job.id)
    if now in (None, "failed", "timeout"):
        discard(s3, settings.exports_bucket, job_prefix(job))


def _copy_out(
    database_url: str, sql: str, params: dict, sink, watchdog: RenderWatchdog | None = None
) -> None:
    # A connection of its own: a COPY stopped half-way leaves it unusable, so it is never pooled.
    conn = psycopg2.connect(database_url)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur, watchdog.watch(conn) if watchdog else nullcontext():
            cur.copy_expert(cur.mogrify(sql, params).decode(), sink)
    finally:
        conn.close()


def sweep(settings, db, s3, celery_app) -> dict:
    """The beat sweep: fail jobs that lost too many workers, requeue stale ones, send the render
    tasks queued jobs lack, expire exports. Files go before the row that says they are gone: a crash
    between the two leaves a job the next sweep handles again."""
    with db.connection() as conn:
        exhausted = render_jobs.exhausted(conn, settings.job_stale_seconds, settings.job_max_attempts)
    failed = []
    for job in exhausted:
        discard(s3, settings.exports_bucket, job_prefix(job))
        with db.connection() as conn:
            lost = f"the worker rendering it was lost {job.attempts} times"
            if render_jobs.finish(conn, job, "failed", job.rows_written, error=lost):
                failed.append(job.id)
                JOBS_FINISHED.labels(job.kind, "failed").inc()
    with db.connection() as conn:
        requeued = render_jobs.requeue_stale(conn, settings.job_stale_seconds)
    # Tasks waiting are read before jobs queued: a task taken in between then only lowers the
    # count of jobs too, so no job is sent a second task. Jobs younger than the stale time may
    # still be sending theirs.
    waiting = render_jobs.waiting_tasks(celery_app)
    with db.connection() as conn:
        lacking = render_jobs.count_queued(conn, settings.job_stale_seconds) - waiting
    for _ in range(lacking):
        render_jobs.enqueue(celery_app)
    with db.connection() as conn:
        expiring = render_jobs.expiring(conn)
    for job in expiring:
        discard(s3, settings.exports_bucket, job_prefix(job))
        with db.connection() as conn:
            render_jobs.mark_expired(conn, job.id)
    sent = max(lacking, 0)
    if failed or requeued or sent or expiring:
        log.info(
            "sweep: %d failed, %d requeued, %d tasks sent, %d expired",
            len(failed),
            len(requeued),
            sent,
            len(expiring),
        )
    return {"failed": failed, "requeued": requeued, "sent": sent, "expired": [j.id for j in expiring]}
