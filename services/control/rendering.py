"""What the control API does for reports and exports besides writing the job row: hand the job to
the workers, and link its finished files."""

import logging

from flask import current_app

from services import render_jobs
from services.web import settings

log = logging.getLogger("sluice.control")


def enqueue(job_id: str) -> None:
    """Send the render task; called after the job row committed.

    If Redis does not take it, the job stays queued and the beat sweep enqueues it again, so the
    client still gets its job rather than an error for work that will happen.
    """
    try:
        render_jobs.enqueue(current_app.config["CELERY"], job_id)
    except Exception:
        log.exception("could not enqueue job %s; the sweep will", job_id)


def presigned_link(key: str) -> str:
    return current_app.config["S3"].generate_presigned_url(
        "get_object",
        Params={"Bucket": settings().exports_bucket, "Key": key},
        ExpiresIn=settings().link_expiry_seconds,
    )
