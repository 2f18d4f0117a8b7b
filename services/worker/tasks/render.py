"""Render and sweep tasks for reports and exports; the logic is in services.worker.render (and, for
the files and rows of deleted apps, services.worker.app_purge)."""

import functools

from celery import current_app, shared_task

from services import aws
from services.database import Database
from services.worker import app_purge, render
from shared.channels import RENDER_TASK, SWEEP_TASK

# Renders are idempotent (claimed by compare-and-set, written under deterministic keys), so a
# task lost with its worker is redelivered; the time limit stays under Redis' visibility timeout.
RENDER_TIME_LIMIT = 3500


@functools.cache
def _resources():
    """One pool and S3 client per worker process, made after the fork, on first use."""
    settings = current_app.conf.sluice_settings
    return settings, Database(settings.database_url, maxconn=4), aws.client(settings, "s3")


@shared_task(
    name=RENDER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    time_limit=RENDER_TIME_LIMIT,
)
def render_job(*_job_id):
    """Render the next job in fair order. Tasks sent before fairness named a job: it is ignored."""
    settings, db, s3 = _resources()
    return render.run_next(settings, db, s3)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_render_jobs():
    settings, db, s3 = _resources()
    render.sweep(settings, db, s3, current_app)
    # Half the beat interval at most, so the next sweep is not dropped while this one deletes.
    app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=settings.job_sweep_seconds / 2)
