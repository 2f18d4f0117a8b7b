"""Pipeline runners: threads inside `celery worker` that deliver running pipelines.

Like the SQS drain, they are hosted by a bootstep so that the worker stays the one process
operators scale; the lease on each pipeline row, not the process layout, keeps one owner at a time.
Each round a runner holds at most its fair share of the running pipelines and gives back the rest,
so adding workers spreads delivery over them.
A runner wakes on NOTIFY (rows stored, a pipeline started) and at least every poll interval.
"""

import logging
import os
import select
import socket
import threading
import time
import uuid
from contextlib import contextmanager

import psycopg2
from prometheus_client import Counter, Gauge

from services.worker import delivery, drivers
from shared.channels import PIPELINES_CHANNEL, STORED_CHANNEL
from shared.schemas.pipelines import DRIVER_CONFIGS

log = logging.getLogger("sluice.pipelines")
DELIVERED = Counter("sluice_pipeline_events_delivered", "events delivered by pipelines", ["driver"])
FAILED = Counter("sluice_pipeline_delivery_failures", "failed pipeline deliveries", ["driver"])
LAG_SECONDS = Gauge(
    "sluice_pipeline_lag_seconds",
    "age of the oldest stored event not yet delivered, worst over the pipelines held (0: caught up)",
    ["driver"],
    multiprocess_mode="livemax",
)

CHANNELS = (STORED_CHANNEL, PIPELINES_CHANNEL)
CLAIM_LIMIT = 100
SLICE_SECONDS = 5.0  # one pipeline's turn, so a long backfill does not starve the others


class PipelineLag:
    """When the oldest undelivered event of each pipeline this process's runners hold was stored.

    A runner records it whenever it reads a pipeline (or finds it caught up), and publishes the
    worst age per driver each round, so the gauge keeps growing while a destination refuses.
    A pipeline not read again for `forget_seconds` went to another worker (or was deleted).
    """

    def __init__(self):
        self._oldest: dict[str, tuple[str, float | None, float]] = {}  # id -> (driver, stored, seen)
        self._lock = threading.Lock()

    def observe(self, pipeline_id: str, driver: str, age: float | None) -> None:
        now = time.time()
        with self._lock:
            self._oldest[pipeline_id] = (driver, None if age is None else now - age, now)

    def publish(self, forget_seconds: float) -> None:
        now, worst = time.time(), {}
        with self._lock:
            for pipeline_id, (driver, stored, seen) in list(self._oldest.items()):
                if seen < now - forget_seconds:
                    del self._oldest[pipeline_id]
                    continue
                worst[driver] = max(worst.get(driver, 0.0), 0.0 if stored is None else now - stored)
            for driver in DRIVER_CONFIGS:
                LAG_SECONDS.labels(driver).set(worst.get(driver, 0.0))


LAG = PipelineLag()


class Runner:
    def __init__(self, settings, name: str = "runner"):
        self.settings = settings
        self._conn = None  # one thread, one connection: kept open across batches
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:8]}"
        self._drivers: dict[tuple[str, int], drivers.Driver] = {}
        self._listener = None

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; back off while Postgres is away; release leases at the end."""
        delay = 0.0
        while not stop.is_set():
            try:
                busy = self.tick(stop)
                delay = 0.0
                if not busy:
                    self.wait(self.settings.pipeline_poll_seconds)
            except Exception as exc:  # Postgres away, or a bug: keep the thread, slow down, say why
                self._close_listener()
                delay = min(30.0, max(0.5, delay * 2))
                log.warning(
                    "pipeline runner paused %.1fs: %r",
                    delay,
                    exc,
                    exc_info=not isinstance(exc, psycopg2.OperationalError),
                )
                stop.wait(delay)
        try:
            with self.transaction() as conn:
                delivery.release(conn, self.owner)
        except psycopg2.Error:
            pass  # the leases lapse on their own
        self.close()

    def close(self) -> None:
        self._close_listener()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def tick(self, stop: threading.Event | None = None) -> bool:
        """One round over the pipelines this runner holds; True when some have more to send now."""
        self._listen()  # before reading, so nothing stored after the read goes unnoticed
        lease = self.settings.pipeline_lease_seconds
        with self.transaction() as conn:
            delivery.mark_runner_alive(conn, self.owner, lease)
            share = min(CLAIM_LIMIT, delivery.fair_share(conn, lease))
            pipelines = delivery.claim(conn, self.owner, lease, share)
            delivery.give_back(conn, self.owner, [p.id for p in pipelines])
        busy = False
        for pipeline in pipelines:
            if stop is not None and stop.is_set():
                break
            busy |= self.deliver(pipeline)
        # A pipeline waiting out a retry is not claimed, but still lags: remember it that long.
        LAG.publish(self.settings.pipeline_retry_max_seconds + 2 * lease)
        return busy

    def deliver(self, pipeline: delivery.Pipeline) -> bool:
        """Send batches until caught up, failed, stopped or out of time; True if more is waiting."""
        driver = self._driver(pipeline)
        limit = min(self.settings.pipeline_batch_size, driver.max_items or self.settings.pipeline_batch_size)
        deadline = time.monotonic() + SLICE_SECONDS
        while time.monotonic() < deadline:
            with self.transaction() as conn:
                batch = delivery.read_batch(conn, pipeline.module, pipeline.app_id, pipeline.position, limit)
                LAG.observe(pipeline.id, pipeline.driver, batch.age if batch else None)
                if batch is None:
                    if pipeline.label == "INIT" and delivery.mark_ready(conn, pipeline, self.owner):
                        pipeline.label = "READY"
                    return False
            if len(batch.docs) < limit and batch.age < driver.flush_interval:
                return False  # wait for a fuller batch; the poll brings us back
            try:
                driver.send(batch.docs, batch.first)
            except Exception as exc:  # whatever the destination did, the batch is retried
                FAILED.labels(pipeline.driver).inc()
                log.warning("pipeline %s: delivery failed: %s", pipeline.id, exc)
                with self.transaction() as conn:
                    delivery.record_failure(
                        conn,
                        pipeline,
                        self.owner,
                        str(exc) or repr(exc),
                        self.settings.pipeline_retry_max_seconds,
                    )
                return False
            with self.transaction() as conn:
                label = delivery.save_position(
                    conn, pipeline, self.owner, batch, self.settings.pipeline_lease_seconds
                )
            DELIVERED.labels(pipeline.driver).inc(len(batch.docs))
            if label not in ("INIT", "READY"):
                return False  # paused, stopped, reset, deleted, or taken over
            pipeline.position = batch.last
        return True

    @contextmanager
    def transaction(self):
        """This runner's connection inside a transaction; a broken connection is dropped."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.settings.database_url, connect_timeout=3)
        try:
            with self._conn:
                yield self._conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self._conn.close()
            raise

    def _driver(self, pipeline: delivery.Pipeline) -> drivers.Driver:
        key = (pipeline.id, pipeline.generation)
        if key not in self._drivers:
            self._drivers[key] = drivers.build(pipeline.driver, pipeline.config, self.settings, pipeline.id)
        return self._drivers[key]

    # --- waking up -------------------------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is None:
            conn = psycopg2.connect(self.settings.database_url, connect_timeout=3)
            conn.autocommit = True
            with conn.cursor() as cur:
                for channel in CHANNELS:
                    cur.execute(f"LISTEN {channel}")
            self._listener = conn

    def wait(self, timeout: float) -> None:
        """Until a notification arrives or `timeout` passes."""
        conn = self._listener
        if conn is None:
            time.sleep(timeout)
            return
        conn.poll()
        if not conn.notifies:
            ready, _, _ = select.select([conn], [], [], timeout)
            if ready:
                conn.poll()
        conn.notifies.clear()

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg2.Error:
                pass
            self._listener = None
