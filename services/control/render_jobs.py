"""What the control API does with render jobs besides storing them: enqueue and link."""
import logging

from flask import current_app

from services.worker import jobs

log = logging.getLogger("sluice.control")

# A report or export request is a small JSON object; getAll with 1000 ids stays well under this.
MAX_BODY_BYTES = 256 * 1024


def enqueue(job_id: str) -> None:
    """Send the render task; called after the job row committed.

    If Redis does not take it, the job stays queued and the beat sweep enqueues it again, so the
    client still gets its job rather than an error for work that will happen.
    """
    try:
        jobs.enqueue(current_app.config["CELERY"], job_id)
    except Exception:
        log.exception("could not enqueue job %s; the sweep will", job_id)


def presigned_link(key: str) -> str:
    settings = current_app.config["SETTINGS"]
    return current_app.config["S3"].generate_presigned_url(
        "get_object", Params={"Bucket": settings.exports_bucket, "Key": key},
        ExpiresIn=settings.link_expiry_seconds)
