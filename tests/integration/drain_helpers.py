"""Building and sending envelopes the way the ingest API does, for the drain's tests."""
import json
import time
import uuid
from contextlib import contextmanager

from services.pg import Database
from services.settings import WorkerSettings
from services.worker.drain import Drainer
from shared import envelope
from shared.schemas.moesif import validate_moesif_events

BARCHART_EVENT = {"customer": "C", "product": "P", "type": "T", "timestamp": 1700000000000, "context": ["x"]}

MOESIF_CALL = {
    "request": {"time": "2024-05-01T10:00:00.250+02:00", "uri": "https://api.example.com/v1/items?page=2",
                "verb": "GET", "ip_address": "203.0.113.9", "headers": {"Accept": "application/json"},
                "body": None, "api_version": "1.2", "transfer_encoding": None},
    "response": {"time": "2024-05-01T08:00:00.400Z", "status": 200, "ip_address": None,
                 "headers": {"Content-Type": "application/json"}, "body": {"items": [1, 2]},
                 "transfer_encoding": "json"},
    "user_id": "u-17", "company_id": "", "session_token": None, "tags": "me",
    "metadata": {"plan": "gold", "note": "tab\there\\back"}, "direction": "Incoming", "weight": 3,
    "blocked_by": None, "transaction_id": "tx-1",
}


def bodies(kind: str, app_id: int, events: list, batch: str | None = None, max_bytes: int = 262_144) -> list[str]:
    if kind == "moesif":
        events = validate_moesif_events(events)
    return envelope.pack(kind, app_id, batch or str(uuid.uuid4()), events, int(time.time() * 1000), max_bytes)


def send(sqs, queue_url: str, message_bodies: list[str]) -> None:
    for body in message_bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def set_redrive(sqs, queue_url: str, dlq_url: str, max_receives: int, visibility_timeout: int) -> None:
    """A smaller receive count and a short visibility timeout, so poison reaches the DLQ in seconds."""
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)})})


def depth(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


@contextmanager
def redriven_drainer(stack, names, provisioned, max_receives: int, visibility_timeout: int):
    """A Drainer on the test's queue after its redrive policy and visibility timeout are set.

    The Drainer reads the visibility timeout when it is built (to pace its heartbeat), so it is
    built after the change.
    """
    settings = stack.settings(WorkerSettings, **names)
    db = Database(stack.database_url, maxconn=2)
    try:
        set_redrive(Drainer(settings, db).sqs, provisioned["queue_url"], provisioned["dlq_url"],
                    max_receives=max_receives, visibility_timeout=visibility_timeout)
        yield Drainer(settings, db)
    finally:
        db.close()
