"""The drain's Prometheus metrics, served from the worker's main process.

Counters and the lag gauge are updated by the drain threads. Queue and DLQ depth are asked of SQS
when Prometheus scrapes, so they are as fresh as the scrape and cost nothing in between.
"""

import logging
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily

from services import aws

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
PAUSES = Counter("sluice_drain_pauses", "times a drain thread backed off because Postgres or SQS failed")


class Lag:
    """Age of the oldest message each drain thread saw in its latest receive.

    SQS only offers this as a CloudWatch metric, so it is read from the messages' SentTimestamp.
    An empty receive means that thread has caught up. The age keeps growing between receives, so
    a worker stuck on a Postgres outage shows a rising lag.
    """

    def __init__(self):
        self._oldest_ms: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def observe(self, messages: list[dict]) -> None:
        sent = [int(m.get("Attributes", {}).get("SentTimestamp", 0)) for m in messages]
        oldest = min((s for s in sent if s), default=None)
        with self._lock:
            self._oldest_ms[threading.current_thread().name] = oldest

    def seconds(self) -> float:
        with self._lock:
            oldest = min((v for v in self._oldest_ms.values() if v is not None), default=None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)


LAG = Lag()
Gauge(
    "sluice_drain_lag_seconds", "age of the oldest message in the latest receive (0: caught up)"
).set_function(LAG.seconds)


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
                attrs = self._sqs.get_queue_attributes(
                    QueueUrl=self._url(name),
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                family.add_metric([role, "visible"], float(attrs["ApproximateNumberOfMessages"]))
                family.add_metric([role, "in_flight"], float(attrs["ApproximateNumberOfMessagesNotVisible"]))
        except (BotoCoreError, ClientError) as exc:
            # A scrape must not fail because SQS is away; the missing series say so.
            log.warning("queue depth unavailable: %s", exc)
            return
        yield family


_collector_registered = False


def serve(settings, port: int, host: str = "0.0.0.0"):
    """Serve /metrics on host:port from this process; return the server, or None."""
    global _collector_registered
    if not _collector_registered:
        REGISTRY.register(QueueDepthCollector(settings))
        _collector_registered = True
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        # Draining matters more than metrics: say so loudly and carry on.
        log.error("worker metrics not served on port %d: %s", port, exc)
        return None
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server
