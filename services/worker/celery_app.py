"""The worker's Celery application factory and the bootstep that hosts the SQS drain threads."""
import logging
import threading

from celery import Celery, bootsteps

from services.pg import Database
from services.worker.runner import PipelineStep
from services.settings import WorkerSettings
from services.worker.jobs import SWEEP_TASK

log = logging.getLogger("sluice.worker")
TASK_MODULES: list[str] = []
TASK_MODULES.append("services.worker.tasks.render")  # issue 5: reports and exports


class DrainStep(bootsteps.StartStopStep):
    """Runs the drain threads inside `celery worker`, the one process operators scale."""

    # Fork the task pool's children before the drain threads exist, not while they hold locks.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.metrics_server = None

    def start(self, worker):
        from services.worker import metrics
        from services.worker.drain import Drainer

        settings = worker.app.conf.sluice_settings
        if settings.worker_metrics_port:
            self.metrics_server = metrics.serve(settings, settings.worker_metrics_port,
                                                settings.worker_metrics_host)
        db = Database(settings.database_url, maxconn=settings.drain_threads + 1)
        for n in range(settings.drain_threads):
            drainer = Drainer(settings, db)
            thread = threading.Thread(target=drainer.run, args=(self.stop_event,),
                                      name=f"sluice-drain-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("started %d drain threads", len(self.threads))

    def stop(self, worker):
        # Warm shutdown (SIGTERM): each thread finishes its in-flight batch (at most one long poll
        # plus one transaction), deletes what it stored, then exits.
        self.stop_event.set()
        for thread in self.threads:
            thread.join()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        log.info("drain threads stopped")


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
    )
    app.steps["worker"].add(DrainStep)
    app.steps["worker"].add(PipelineStep)
    # issue 5: reports and exports. A new dict: the default one is shared between Celery apps.
    # A sweep that waited past the next one is dropped (expires) rather than piling up behind renders.
    app.conf.beat_schedule = {**app.conf.beat_schedule, "sluice.sweep-render-jobs": {
        "task": SWEEP_TASK, "schedule": settings.job_sweep_seconds,
        "options": {"expires": settings.job_sweep_seconds}}}
    return app
