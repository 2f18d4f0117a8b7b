"""Pipeline runners: threads inside `celery worker` that deliver running pipelines.

Like the SQS drain, they are hosted by a bootstep so that the worker stays the one process
operators scale; the lease on each pipeline row, not the process layout, keeps one owner at a time.

A runner is a coordinating thread and a pool of senders. Each round the coordinator records that
the runner is alive, claims at most its fair share of the running pipelines (giving back the rest,
so adding workers spreads delivery over them), and hands each pipeline it holds, unless one of its
senders already has it, to a sender, which delivers it for a slice of time. The coordinator never
waits for a send: a destination that hangs holds one sender until the delivery's deadline while
the other senders go on with everyone else's pipelines, and the heartbeat and leases stay fresh.
One app gets at most half the senders, so a tenant with several slow destinations cannot take
them all.

A runner wakes on NOTIFY (rows stored, a pipeline started), when a sender stops with more to do,
and at least every poll interval.

One runner per pipeline: before reading each batch the sender renews the lease and checks it still
holds it (delivery.take_turn); the send's deadline counts from before that renewal and is at most
half the lease (WorkerSettings), so no batch is on its way once the lease could have gone to another.
"""

import logging
import os
import select
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg2
from prometheus_client import Counter, Gauge

from services.database import Database
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
SLICE_SECONDS = 5.0  # one pipeline's turn on a sender, so a long backfill does not starve the others


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
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:8]}"
        self._conn = None  # the coordinator's connection, kept open across rounds
        self._listener = None
        self._db = Database(settings.database_url, maxconn=settings.pipeline_senders)  # the senders'
        self._senders = ThreadPoolExecutor(settings.pipeline_senders, thread_name_prefix=f"sluice-{name}")
        self._per_app = max(1, settings.pipeline_senders // 2)
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}  # pipeline id -> its app, while a sender has it
        # ("pipeline", id) left for later as busy, ("app", id) held at its limit: look again when
        # a sender ends with one of them, as what woke us may have been for it.
        self._passed_over: set[tuple[str, object]] = set()
        self._turns: dict[str, float] = {}  # pipeline id -> when a sender last took it
        self._drivers: dict[tuple[str, int], drivers.Driver] = {}
        self._wake_r, self._wake_w = os.pipe()  # senders wake the coordinator through it
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; back off while Postgres is away; release leases at the end."""
        delay = 0.0
        while not stop.is_set():
            try:
                self.tick()
                delay = 0.0
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
        self._senders.shutdown(wait=True)  # what is in flight ends by its deadline
        try:
            with self.transaction() as conn:
                delivery.release(conn, self.owner)
        except psycopg2.Error:
            pass  # the leases lapse on their own
        self.close()

    def close(self) -> None:
        self._senders.shutdown(wait=True)
        self._close_listener()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._db.close()
        if self._wake_r >= 0:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def tick(self) -> list[Future]:
        """One round: claim this runner's share, hand each pipeline to a sender; the deliveries begun."""
        self._listen()  # before reading, so nothing stored after the read goes unnoticed
        lease = self.settings.pipeline_lease_seconds
        with self._lock:
            in_flight = list(self._in_flight)
        with self.transaction() as conn:
            delivery.mark_runner_alive(conn, self.owner, lease)
            share = min(CLAIM_LIMIT, delivery.fair_share(conn, lease))
            pipelines = delivery.claim(conn, self.owner, lease, share)
            delivery.give_back(conn, self.owner, [p.id for p in pipelines] + in_flight)
        # The longest waiting first, so that those an app's limit held back go first next round.
        self._turns = {p.id: self._turns.get(p.id, 0.0) for p in pipelines}
        with self._lock:  # drivers of pipelines no longer ours (deleted, reset, taken over) go
            held = self._turns.keys() | self._in_flight.keys()
            self._drivers = {key: d for key, d in self._drivers.items() if key[0] in held}
        pipelines.sort(key=lambda p: self._turns[p.id])
        begun = [self._hand_over(pipeline) for pipeline in pipelines]
        LAG.publish(self._lag_memory())
        return [future for future in begun if future is not None]

    def _hand_over(self, pipeline: delivery.Pipeline) -> Future | None:
        with self._lock:
            app_senders = sum(1 for app in self._in_flight.values() if app == pipeline.app_id)
            if pipeline.id in self._in_flight:
                self._passed_over.add(("pipeline", pipeline.id))
                return None
            if app_senders >= self._per_app:
                self._passed_over.add(("app", pipeline.app_id))
                return None
            self._in_flight[pipeline.id] = pipeline.app_id
        self._turns[pipeline.id] = time.monotonic()
        return self._senders.submit(self._send_slice, pipeline)

    def _lag_memory(self) -> float:
        # A pipeline waiting out a retry is not claimed, but still lags: remember it that long.
        return self.settings.pipeline_retry_max_seconds + 2 * self.settings.pipeline_lease_seconds

    def _send_slice(self, pipeline: delivery.Pipeline) -> bool:
        """A sender's turn with one pipeline; then the coordinator looks again if anything waits."""
        more = False
        try:
            more = self.deliver(pipeline)
        except Exception as exc:  # Postgres away, or a bug: the pipeline comes back next round
            log.warning("pipeline %s: %r", pipeline.id, exc, exc_info=not isinstance(exc, psycopg2.Error))
        finally:
            LAG.publish(self._lag_memory())
            with self._lock:
                del self._in_flight[pipeline.id]
                passed_over = {("pipeline", pipeline.id), ("app", pipeline.app_id)} & self._passed_over
                self._passed_over -= passed_over
            if more or passed_over:
                self._wake()
        return more

    def deliver(self, pipeline: delivery.Pipeline) -> bool:
        """Send batches until caught up, failed, no longer ours or out of time; True if more is waiting.

        After the first, a batch costs one transaction besides its send: saving the position
        renews the lease, and the next batch is read in the same transaction.
        """
        driver = self._driver(pipeline)
        limit = min(self.settings.pipeline_batch_size, driver.max_items or self.settings.pipeline_batch_size)
        lease = self.settings.pipeline_lease_seconds
        slice_end = time.monotonic() + SLICE_SECONDS
        # Counted from before the lease is renewed: the send ends while the lease surely holds.
        deadline = time.monotonic() + self.settings.pipeline_deadline_seconds
        with self._db.connection() as conn:
            turn = delivery.take_turn(conn, pipeline, self.owner, lease)
            if turn is None:
                return False  # paused, stopped, reset, deleted, or taken over
            label, position = turn
            batch = self._next_batch(conn, pipeline, driver, label, position, limit)
        while batch is not None:
            try:
                driver.send(batch.docs, batch.first, deadline)
            except Exception as exc:  # whatever the destination did, the batch is retried
                FAILED.labels(pipeline.driver).inc()
                if isinstance(exc, drivers.DeliveryFailed):
                    error = str(exc)
                else:  # a bug: the tenant sees that much, the log has the rest
                    log.exception("pipeline %s: delivery failed", pipeline.id)
                    error = "internal error while sending; the batch will be retried"
                with self._db.connection() as conn:
                    delivery.record_failure(
                        conn, pipeline, self.owner, error, self.settings.pipeline_retry_max_seconds
                    )
                return False
            deadline = time.monotonic() + self.settings.pipeline_deadline_seconds
            with self._db.connection() as conn:
                label = delivery.save_position(conn, pipeline, self.owner, batch, lease)
                DELIVERED.labels(pipeline.driver).inc(len(batch.docs))
                if label not in ("INIT", "READY"):
                    return False  # paused, stopped, reset, deleted, or taken over
                if time.monotonic() >= slice_end:
                    return True
                batch = self._next_batch(conn, pipeline, driver, label, batch.last, limit)
        return False

    def _next_batch(self, conn, pipeline: delivery.Pipeline, driver, label: str, position, limit: int):
        """The batch to send after `position`; None when caught up (INIT becomes READY) or when a
        short batch should wait for more events (its driver's flush interval)."""
        batch = delivery.read_batch(conn, pipeline.module, pipeline.app_id, position, limit)
        LAG.observe(pipeline.id, pipeline.driver, batch.age if batch else None)
        if batch is None:
            if label == "INIT":
                delivery.mark_ready(conn, pipeline, self.owner)
            return None
        if len(batch.docs) < limit and batch.age < driver.flush_interval:
            return None  # the poll brings us back
        return batch

    @contextmanager
    def transaction(self):
        """The coordinator's connection inside a transaction; a broken connection is dropped."""
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
        with self._lock:
            driver = self._drivers.get(key)
        if driver is None:  # built outside the lock: an S3 driver may first assume a role
            driver = drivers.build(
                pipeline.driver, pipeline.config, self.settings, pipeline.id, pipeline.app_id
            )
            with self._lock:  # a reset's new generation replaces the old one's driver
                self._drivers = {k: d for k, d in self._drivers.items() if k[0] != pipeline.id}
                self._drivers[key] = driver
        return driver

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
        """Until a notification arrives, a sender asks for another round, or `timeout` passes."""
        conn = self._listener
        if conn is not None:
            conn.poll()
        if conn is None or not conn.notifies:
            sources = [self._wake_r] if conn is None else [self._wake_r, conn]
            ready, _, _ = select.select(sources, [], [], timeout)
            if conn is not None and conn in ready:
                conn.poll()
        if conn is not None:
            conn.notifies.clear()
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b".")
        except OSError:  # already awake (the pipe is full), or closed at the end
            pass

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg2.Error:
                pass
            self._listener = None
