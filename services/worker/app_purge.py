"""The sweep's share of deleting an app: its files, then its stored rows in batches.

See services/app_deletions.py. Each batch commits with its count, so a sweep stopped half-way
(its time budget, a restart) loses nothing: the next sweep goes on where it stopped.
"""

import logging
import time

from botocore.exceptions import BotoCoreError, ClientError

from services import app_deletions
from services.worker.render import app_prefixes
from services.worker.s3files import discard

log = logging.getLogger("sluice.purge")
BATCH_ROWS = 10_000


def purge_deleted_apps(settings, db, s3, budget_seconds: float) -> list[int]:
    """Work on due deletions for about budget_seconds at most; return the apps finished."""
    deadline = time.monotonic() + budget_seconds
    with db.connection() as conn:
        due = app_deletions.due(conn, settings.job_stale_seconds)
    finished = []
    for app_id in due:
        if time.monotonic() > deadline:
            break
        try:
            files = sum(discard(s3, settings.exports_bucket, prefix) for prefix in app_prefixes(app_id))
        except (BotoCoreError, ClientError) as exc:  # S3 away: say so where operators look, retry later
            log.warning("deleting app %s: files not deleted: %s", app_id, exc)
            with db.connection() as conn:
                app_deletions.record(conn, app_id, 0, 0, False, f"files: {exc}"[:500])
            continue
        drained = all(_delete_rows(db, table, app_id, deadline) for table in app_deletions.STORED_TABLES)
        with db.connection() as conn:
            app_deletions.record(conn, app_id, files, 0, drained)
        if drained:
            finished.append(app_id)
            log.info("deleted app %s: its files and stored rows are gone", app_id)
    return finished


def _delete_rows(db, table: str, app_id: int, deadline: float) -> bool:
    """Delete the app's rows of `table` in batches until none is left (True) or time is up."""
    while time.monotonic() <= deadline:
        with db.connection() as conn:
            deleted = app_deletions.delete_stored(conn, table, app_id, BATCH_ROWS)
            app_deletions.record(conn, app_id, 0, deleted, False)
        if deleted < BATCH_ROWS:
            return True
    return False
