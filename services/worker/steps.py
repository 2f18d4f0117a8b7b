"""Bootsteps that host Sluice's long-running threads inside `celery worker`.

`celery worker` stays the one process operators scale: besides Celery's task pool it drains SQS
and runs the pipeline delivery loops, each a set of threads that stop on warm shutdown (SIGTERM).
"""

import logging
import os
import socket
import threading

import psycopg2
from celery import bootsteps
from prometheus_client import Gauge

from services import fleet
from services.database import Database

log = logging.getLogger("sluice.worker")
DRAIN_THREADS = Gauge(
    "sluice_drain_threads_running", "SQS drain threads running in this worker", multiprocess_mode="livesum"
)


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
    """The SQS drain threads, the worker's heartbeat row (services/fleet.py), and its /metrics server."""

    label = "drain"
    metrics_server = None

    def targets(self, settings) -> list:
        from services.worker import metrics
        from services.worker.drain import Drainer

        if settings.worker_metrics_port:
            self.metrics_server = metrics.serve(
                settings, settings.worker_metrics_port, settings.worker_metrics_host
            )
        # A connection per drain thread, one for the heartbeat, one spare.
        db = Database(settings.database_url, maxconn=settings.drain_threads + 2)
        threads = DrainThreads()
        drains = [threads.counted(Drainer(settings, db).run) for _ in range(settings.drain_threads)]
        return [*drains, Heartbeat(db, threads, metrics.LAG).run]

    def stop(self, worker):
        super().stop(worker)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()


class DrainThreads:
    """How many drain threads are running: the gauge operators alert on, and the heartbeat's count."""

    def __init__(self):
        self.running = 0
        self._lock = threading.Lock()

    def counted(self, run):
        def counted_run(stop: threading.Event) -> None:
            self._add(1)
            try:
                run(stop)
            finally:
                self._add(-1)

        return counted_run

    def _add(self, n: int) -> None:
        with self._lock:
            self.running += n
        DRAIN_THREADS.inc(n)


class Heartbeat:
    """Keeps this worker's heartbeat row fresh, and the drain lag gauge growing between receives."""

    def __init__(self, db, threads: DrainThreads, lag):
        self.db, self.threads, self.lag = db, threads, lag
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, stop: threading.Event) -> None:
        while True:
            self.lag.refresh()
            try:
                with self.db.connection() as conn:
                    fleet.beat(conn, self.worker, self.threads.running, self.lag.oldest_sent())
            except psycopg2.Error as exc:  # Postgres away: the drain pauses too; try again next beat
                log.warning("worker heartbeat not recorded: %s", exc)
            if stop.wait(fleet.HEARTBEAT_SECONDS):
                break
        try:
            with self.db.connection() as conn:
                fleet.leave(conn, self.worker)
        except psycopg2.Error:
            pass  # the row goes stale and stops counting


class PipelineStep(ThreadsStep):
    """The pipeline runners: each leases pipelines and delivers their events."""

    label = "pipelines"

    def targets(self, settings) -> list:
        from services.worker.runner import Runner

        return [Runner(settings, name=f"runner-{n}").run for n in range(settings.pipeline_threads)]
