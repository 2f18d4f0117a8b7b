"""Draining the SQS events queue into Postgres with a plain long-poll loop.

Celery's SQS transport must never read this queue: it deletes messages that lack Celery's task
headers. Each receive of up to 10 messages is stored in one transaction; messages are deleted only
after it commits. Events the database refuses are parked in that same transaction
(services/parking.py), so one bad event never holds back the good ones of its message. A message
that is not an envelope we can read is left alone, so SQS redelivers it and, after the redrive
policy's receive count, moves it to the dead-letter queue.
"""

import logging
import queue
import threading

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from services import aws, parking
from services.event_writer import pending
from services.worker.metrics import (
    FAILED_MESSAGES,
    LAG,
    PARKED_EVENTS,
    PAUSES,
    STORED_BATCHES,
    STORED_EVENTS,
    STORED_MESSAGES,
)
from shared import envelope

log = logging.getLogger("sluice.drain")

TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, BotoCoreError, ClientError)
MAX_BACKOFF_SECONDS = 30.0


class Drainer:
    def __init__(self, settings, db, sqs=None):
        self.settings = settings
        self.db = db
        self.sqs = sqs or aws.client(settings, "sqs")
        self.queue_url = aws.queue_url(self.sqs, settings.events_queue)
        self.visibility_timeout = int(
            self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])[
                "Attributes"
            ]["VisibilityTimeout"]
        )
        self._delete_behind: DeleteBehind | None = None

    def run(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; back off (up to 30 s) while Postgres or SQS are away.

        Deletes run behind, in a second thread, while this one receives and stores the next
        batch: a delete is a whole SQS round trip that need not hold up the next commit.
        """
        with DeleteBehind(self._delete) as self._delete_behind:
            self._run(stop)
        self._delete_behind = None

    def _run(self, stop: threading.Event) -> None:
        delay = 0.0
        while not stop.is_set():
            try:
                if delay:
                    # Receive nothing until Postgres answers: every receive of a message we then
                    # cannot store counts towards its redrive to the DLQ.
                    self.db.ping()
                self.drain_once(self.settings.drain_wait_seconds)
                delay = 0.0
            except TRANSIENT as exc:
                PAUSES.inc()
                delay = min(MAX_BACKOFF_SECONDS, max(0.5, delay * 2))
                log.warning("drain paused %.1fs: %s", delay, exc)
                stop.wait(delay)
            except Exception:  # a bug or a missing migration: a dead thread would stall silently
                PAUSES.inc()
                delay = MAX_BACKOFF_SECONDS
                log.exception("drain paused %.1fs after an unexpected error", delay)
                stop.wait(delay)

    def drain_once(self, wait_seconds: int = 0) -> int:
        """Receive up to 10 messages, store (or park) their events, delete them; return how many."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["SentTimestamp"],
        ).get("Messages", [])
        LAG.observe(messages)
        decoded = []
        for message in messages:
            try:
                decoded.append((message, envelope.decode(message["Body"])))
            except envelope.EnvelopeError as exc:
                FAILED_MESSAGES.labels("unreadable").inc()
                log.error("poison message %s left for the DLQ: %s", message["MessageId"], exc)
        if not decoded:
            return 0
        messages = [m for m, _ in decoded]
        with VisibilityExtender(self.sqs, self.queue_url, messages, self.visibility_timeout):
            self._store([group for _, groups in decoded for group in groups])
        (self._delete_behind.submit if self._delete_behind else self._delete)(messages)
        return len(messages)

    def _store(self, groups: list[dict]) -> None:
        """Store every event in one transaction, parking those the database refuses."""
        with self.db.connection() as conn:
            inserted, parked = parking.store_or_park(conn, pending(groups))
        STORED_EVENTS.inc(inserted)
        STORED_BATCHES.inc()
        for item, reason in parked:
            PARKED_EVENTS.labels(item.kind).inc()
            log.error(
                "parked %s event app %s batch %s sequence %s: %s",
                item.kind,
                item.app_id,
                item.batch,
                item.sequence,
                reason,
            )

    def _delete(self, messages) -> None:
        answer = self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        # A failed delete means a redelivery, which storing absorbs; count it and move on.
        for failed in answer.get("Failed", []):
            FAILED_MESSAGES.labels("delete").inc()
            log.warning("delete failed, message will be redelivered: %s", failed)
        STORED_MESSAGES.inc(len(answer.get("Successful", [])))


class DeleteBehind:
    """Deletes committed batches in a thread of its own, at most one batch behind.

    The one-slot queue makes the drain wait when SQS deletes fall behind, so committed but
    undeleted messages stay few. Leaving the block deletes what is pending: a clean stop leaves
    no stored message to come back.
    """

    def __init__(self, delete):
        self._delete = delete
        self._pending: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(
            target=self._loop, name=f"{threading.current_thread().name}-delete", daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._pending.put(None)
        self._thread.join()

    def submit(self, messages: list[dict]) -> None:
        self._pending.put(messages)

    def _loop(self) -> None:
        while (messages := self._pending.get()) is not None:
            try:
                self._delete(messages)
            except Exception as exc:  # this thread must outlive any error, or the drain would block
                # Stored already: they come back after the visibility timeout and store as nothing new.
                FAILED_MESSAGES.labels("delete").inc(len(messages))
                log.warning("delete failed, %d stored messages will be redelivered: %s", len(messages), exc)


class VisibilityExtender:
    """Keeps a batch's messages invisible while it is stored, however long Postgres takes.

    Without it a batch slower than the visibility timeout reappears, another worker stores it
    too (harmless but wasted) and its receive count creeps towards the DLQ.
    """

    def __init__(self, sqs, queue_url: str, messages: list[dict], visibility_timeout: int):
        self.sqs, self.queue_url, self.messages = sqs, queue_url, messages
        self.visibility_timeout = visibility_timeout
        self.interval = max(0.5, visibility_timeout / 3)
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"{threading.current_thread().name}-heartbeat", daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                answer = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {
                            "Id": str(i),
                            "ReceiptHandle": m["ReceiptHandle"],
                            "VisibilityTimeout": self.visibility_timeout,
                        }
                        for i, m in enumerate(self.messages)
                    ],
                )
            except (BotoCoreError, ClientError) as exc:
                log.warning("heartbeat failed, the batch may be redelivered: %s", exc)
                continue
            for failed in answer.get("Failed", []):
                log.warning("heartbeat failed for one message, it may be redelivered: %s", failed)
