"""What the control API does for reports and exports besides writing the job row: hold an app to
its share of the render fleet, hand the job to the workers, and link its finished files."""

import logging

from flask import current_app

from services import quotas, render_jobs
from services.api_errors import ApiError
from services.web import settings

log = logging.getLogger("sluice.control")

# How long an app at its limit is asked to wait: about the time a small render takes.
BUSY_RETRY_AFTER_SECONDS = 30


def refuse_when_busy(conn, app_id: int) -> None:
    """429 when the app already has SLUICE_RENDER_JOBS_PER_APP reports and exports open; call it in
    the transaction that creates the job."""
    limit = settings().render_jobs_per_app
    if quotas.at_limit(conn, app_id, quotas.OPEN_RENDER_JOBS, limit):
        raise ApiError(
            429,
            "TOO_MANY_JOBS",
            f"This app already has {limit} reports and exports queued or running, the most it may "
            "have; start another once one has finished.",
            {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )


def enqueue(job_id: str) -> None:
    """Send a render task for the new job; called after the job row committed.

    If Redis does not take it, the job stays queued and the beat sweep sends the task it lacks, so
    the client still gets its job rather than an error for work that will happen.
    """
    try:
        render_jobs.enqueue(current_app.config["CELERY"])
    except Exception:
        log.exception("could not enqueue a task for job %s; the sweep will", job_id)


def presigned_link(key: str) -> str:
    return current_app.config["S3"].generate_presigned_url(
        "get_object",
        Params={"Bucket": settings().exports_bucket, "Key": key},
        ExpiresIn=settings().link_expiry_seconds,
    )
