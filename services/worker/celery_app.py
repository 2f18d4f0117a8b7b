"""The worker's Celery application factory."""

from celery import Celery
from kombu import Queue

from services.settings import WorkerSettings
from services.worker.steps import DrainStep, PipelineStep
from shared.channels import RENDER_QUEUE, SWEEP_TASK

TASK_MODULES = ["services.worker.tasks.render"]


def make_celery(settings: WorkerSettings | None = None) -> Celery:
    settings = settings or WorkerSettings.from_env()
    app = Celery("sluice", broker=settings.redis_url, include=TASK_MODULES)
    app.conf.update(
        sluice_settings=settings,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # job state lives in Postgres
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # A worker started without -Q consumes both: the default queue (the sweep) and the renders.
        task_queues=[Queue("celery"), Queue(RENDER_QUEUE)],
    )
    app.steps["worker"].add(DrainStep)
    app.steps["worker"].add(PipelineStep)
    # A new dict: the default one is shared between Celery apps. A sweep that waited past the
    # next one is dropped (expires) rather than piling up behind renders.
    app.conf.beat_schedule = {
        **app.conf.beat_schedule,
        "sluice.sweep-render-jobs": {
            "task": SWEEP_TASK,
            "schedule": settings.job_sweep_seconds,
            "options": {"expires": settings.job_sweep_seconds},
        },
    }
    return app
