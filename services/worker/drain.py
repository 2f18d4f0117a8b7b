"""Draining the SQS events queue into Postgres with a plain long-poll loop.

Celery's SQS transport must never read this queue: it deletes messages that lack Celery's task
headers. Each receive of up to 10 messages is stored in one transaction; messages are deleted only
after it commits. A message that cannot be stored is left alone, so SQS redelivers it and, after
the redrive policy's receive count, parks it in the dead-letter queue.
"""
import logging
import threading

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from shared import envelope
from services import aws
from services.worker.store import UnknownKind, store

log = logging.getLogger("sluice.drain")
STORED_EVENTS = Counter("sluice_drain_events_stored", "events written to Postgres (new rows)")
STORED_MESSAGES = Counter("sluice_drain_messages_stored", "SQS messages stored and deleted")
FAILED_MESSAGES = Counter("sluice_drain_messages_failed", "messages left for redelivery", ["reason"])

TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, BotoCoreError, ClientError)


class Drainer:
    def __init__(self, settings, db, sqs=None):
        self.settings = settings
        self.db = db
        self.sqs = sqs or aws.client(settings, "sqs")
        self.queue_url = aws.queue_url(self.sqs, settings.events_queue)

    def run(self, stop: threading.Event) -> None:
        """Drain until `stop` is set; back off (up to 30 s) while Postgres or SQS are away."""
        delay = 0.0
        while not stop.is_set():
            try:
                self.drain_once(self.settings.drain_wait_seconds)
                delay = 0.0
            except TRANSIENT as exc:
                delay = min(30.0, max(0.5, delay * 2))
                log.warning("drain paused %.1fs: %s", delay, exc)
                stop.wait(delay)

    def drain_once(self, wait_seconds: int = 0) -> int:
        """Receive up to 10 messages, store them, delete the stored ones; return how many."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        decoded = []
        for message in messages:
            try:
                decoded.append((message, envelope.decode(message["Body"])))
            except envelope.EnvelopeError as exc:
                FAILED_MESSAGES.labels("unreadable").inc()
                log.error("poison message %s left for the DLQ: %s", message["MessageId"], exc)
        stored = self._store_all(decoded)
        self._delete(stored)
        return len(stored)

    def _store_all(self, decoded) -> list[dict]:
        """Store all in one transaction; if the database rejects it, store one by one."""
        if not decoded:
            return []
        try:
            with self.db.connection() as conn:
                STORED_EVENTS.inc(store(conn, [env for _, env in decoded]))
            return [m for m, _ in decoded]
        except (psycopg2.DataError, psycopg2.IntegrityError, UnknownKind, KeyError, TypeError):
            if len(decoded) == 1:
                FAILED_MESSAGES.labels("rejected").inc()
                log.exception("message %s rejected, left for the DLQ", decoded[0][0]["MessageId"])
                return []
        stored = []
        for pair in decoded:
            stored += self._store_all([pair])
        return stored

    def _delete(self, messages) -> None:
        if not messages:
            return
        answer = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        # A failed delete means a redelivery, which storing absorbs; count it and move on.
        for failed in answer.get("Failed", []):
            FAILED_MESSAGES.labels("delete").inc()
            log.warning("delete failed, message will be redelivered: %s", failed)
        STORED_MESSAGES.inc(len(answer.get("Successful", [])))
