"""The worker's Prometheus metrics, served from its main process.

Celery runs renders and the sweep in its pool's child processes, so the worker uses
prometheus_client's multiprocess mode (services/worker/main.py sets PROMETHEUS_MULTIPROC_DIR before
anything imports prometheus_client, so before the pool forks): every process writes its samples to
files there and /metrics adds them up. The drain's counters and gauges live in the main process.
Queue and DLQ depth are asked of SQS when Prometheus scrapes, so they are as fresh as the scrape
and cost nothing in between.
"""

import logging
import os
import re
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from services import aws
from services.status import queue_depth
from shared.enums import EventKind

log = logging.getLogger("sluice.drain")

STORED_EVENTS = Counter("sluice_drain_events_stored", "events written to Postgres (new rows)")
STORED_MESSAGES = Counter("sluice_drain_messages_stored", "SQS messages stored and deleted")
STORED_BATCHES = Counter("sluice_drain_batches_stored", "receive batches committed in one transaction")
FAILED_MESSAGES = Counter("sluice_drain_messages_failed", "messages left for redelivery", ["reason"])
PARKED_EVENTS = Counter(
    "sluice_drain_events_parked",
    "events the database refused, kept in parked_events with its reason",
    ["kind"],
)
# At 0 from the start, so rate() and increase() see the first one.
for _reason in ("unreadable", "delete"):
    FAILED_MESSAGES.labels(_reason)
for _kind in EventKind:
    PARKED_EVENTS.labels(_kind.value)
PAUSES = Counter("sluice_drain_pauses", "times a drain thread backed off because Postgres or SQS failed")
LAG_SECONDS = Gauge(
    "sluice_drain_lag_seconds",
    "age of the oldest message in the latest receive (0: caught up)",
    multiprocess_mode="livemax",
)


class Lag:
    """Age of the oldest message each drain thread saw in its latest receive.

    SQS only offers this as a CloudWatch metric, so it is read from the messages' SentTimestamp.
    An empty receive means that thread has caught up. The age keeps growing between receives (the
    worker's heartbeat calls refresh() every few seconds), so a worker stuck on a Postgres outage
    shows a rising lag.
    """

    def __init__(self):
        self._oldest_ms: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def observe(self, messages: list[dict]) -> None:
        sent = [int(m.get("Attributes", {}).get("SentTimestamp", 0)) for m in messages]
        oldest = min((s for s in sent if s), default=None)
        with self._lock:
            self._oldest_ms[threading.current_thread().name] = oldest
        self.refresh()

    def oldest_sent(self) -> float | None:
        """Epoch seconds of the oldest message in the threads' latest receives; None: caught up."""
        with self._lock:
            oldest = min((v for v in self._oldest_ms.values() if v is not None), default=None)
        return None if oldest is None else oldest / 1000

    def seconds(self) -> float:
        oldest = self.oldest_sent()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def refresh(self) -> None:
        LAG_SECONDS.set(self.seconds())


LAG = Lag()


class QueueDepthCollector:
    """sluice_queue_messages{queue, state}: the events queue and its DLQ, sampled on scrape."""

    def __init__(self, settings, sqs=None):
        self._settings = settings
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    def _url(self, name: str) -> str:
        if name not in self._urls:
            self._urls[name] = aws.queue_url(self._sqs, name)
        return self._urls[name]

    def describe(self):
        # Registering must not call SQS (the registry would otherwise collect once to learn names).
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sluice_queue_messages", "messages in an SQS queue (approximate)", labels=["queue", "state"]
        )

    def collect(self):
        if self._sqs is None:
            self._sqs = aws.client(self._settings, "sqs")
        family = self._family()
        try:
            for role, name in (("events", self._settings.events_queue), ("dlq", self._settings.events_dlq)):
                depth = queue_depth(self._sqs, self._url(name))
                family.add_metric([role, "visible"], float(depth["visible"]))
                family.add_metric([role, "in_flight"], float(depth["in_flight"]))
        except (BotoCoreError, ClientError) as exc:
            # A scrape must not fail because SQS is away; the missing series say so.
            log.warning("queue depth unavailable: %s", exc)
            return
        yield family


class LiveProcessesCollector(multiprocess.MultiProcessCollector):
    """Every process's samples from the multiprocess directory, once dead processes are marked.

    A pool child that exits (recycled, or killed) leaves its files behind: its counters must go on
    counting, but its live gauges must not, so they are dropped before each scrape.
    """

    _PID = re.compile(r"_(\d+)\.db$")

    def collect(self):
        for name in os.listdir(self._path):
            found = self._PID.search(name)
            if found and not _alive(int(found.group(1))):
                multiprocess.mark_process_dead(int(found.group(1)), self._path)
        return super().collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def registry(settings) -> CollectorRegistry:
    """What /metrics shows: every process's samples (multiprocess mode) or this one's, and the queues."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        served = CollectorRegistry()
        LiveProcessesCollector(served, directory)
    else:
        served = REGISTRY
    served.register(QueueDepthCollector(settings))
    return served


_served: CollectorRegistry | None = None


def serve(settings, port: int, host: str = "0.0.0.0"):
    """Serve /metrics on host:port from this process; return the server, or None."""
    global _served
    if _served is None:
        _served = registry(settings)
    try:
        server, _thread = start_http_server(port, addr=host, registry=_served)
    except OSError as exc:
        # Draining matters more than metrics: say so loudly and carry on.
        log.error("worker metrics not served on port %d: %s", port, exc)
        return None
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server
