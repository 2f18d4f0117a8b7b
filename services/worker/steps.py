"""Bootsteps that host Sluice's long-running threads inside `celery worker`.

`celery worker` stays the one process operators scale: besides Celery's task pool it drains SQS
and runs the pipeline delivery loops, each a set of threads that stop on warm shutdown (SIGTERM).
"""

import logging
import threading

from celery import bootsteps

from services.database import Database

log = logging.getLogger("sluice.worker")


class ThreadsStep(bootsteps.StartStopStep):
    """Starts `targets(settings)` in threads; each target runs until the stop event is set."""

    # Fork the task pool's children before these threads exist, not while they hold locks.
    requires = ("celery.worker.components:Pool",)
    label = "threads"

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def targets(self, settings) -> list:
        raise NotImplementedError

    def start(self, worker):
        for n, target in enumerate(self.targets(worker.app.conf.sluice_settings)):
            thread = threading.Thread(
                target=target, args=(self.stop_event,), name=f"sluice-{self.label}-{n}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        log.info("started %d %s threads", len(self.threads), self.label)

    def stop(self, worker):
        # Warm shutdown: each thread finishes what it has in flight, then exits.
        self.stop_event.set()
        for thread in self.threads:
            thread.join()
        log.info("%s threads stopped", self.label)


class DrainStep(ThreadsStep):
    """The SQS drain threads, and the worker's /metrics server."""

    label = "drain"
    metrics_server = None

    def targets(self, settings) -> list:
        from services.worker import metrics
        from services.worker.drain import Drainer

        if settings.worker_metrics_port:
            self.metrics_server = metrics.serve(
                settings, settings.worker_metrics_port, settings.worker_metrics_host
            )
        db = Database(settings.database_url, maxconn=settings.drain_threads + 1)
        return [Drainer(settings, db).run for _ in range(settings.drain_threads)]

    def stop(self, worker):
        super().stop(worker)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()


class PipelineStep(ThreadsStep):
    """The pipeline runners: each leases pipelines and delivers their events."""

    label = "pipelines"

    def targets(self, settings) -> list:
        from services.worker.runner import Runner

        return [Runner(settings, name=f"runner-{n}").run for n in range(settings.pipeline_threads)]
