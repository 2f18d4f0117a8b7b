"""The SQS dead-letter queue, for operators: messages the drain could not read, and putting them back.

Messages land there when they are not an envelope this version reads (an unreadable body, an
unknown version or kind). Events the database refused are not here: the drain parks them in
Postgres (services/parking.py); `sluice dlq` shows and handles both.

SQS cannot peek, so both commands receive from the DLQ with a visibility timeout long enough for
one pass to see each message once, and give back (visibility 0) whatever they did not move.
"""

from collections.abc import Callable
from datetime import UTC, datetime

from shared import envelope

HOLD_SECONDS = 120


def describe(message: dict) -> dict:
    """What an operator needs to decide on a parked message, without printing its events."""
    attrs = message.get("Attributes", {})
    sent_ms = int(attrs.get("SentTimestamp", 0))
    info = {
        "message_id": message["MessageId"],
        "sent_at": datetime.fromtimestamp(sent_ms / 1000, UTC).isoformat() if sent_ms else None,
        "receive_count": int(attrs.get("ApproximateReceiveCount", 0)),
        "bytes": len(message["Body"].encode()),
    }
    try:
        groups = envelope.decode(message["Body"])
    except envelope.EnvelopeError as exc:
        return {**info, "problem": str(exc)}
    info["events"] = sum(len(g["events"]) for g in groups)
    info["groups"] = [
        {
            "kind": g["kind"],
            "app_id": g["app_id"],
            "batch": g["batch"],
            "first_sequence": g["first_sequence"],
            "events": len(g["events"]),
        }
        for g in groups
    ]
    return info


def _receive(sqs, url: str, count: int) -> list[dict]:
    return sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=count,
        WaitTimeSeconds=1,
        VisibilityTimeout=HOLD_SECONDS,
        AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
    ).get("Messages", [])


def _give_back(sqs, url: str, messages: list[dict]) -> None:
    for start in range(0, len(messages), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + 10])
            ],
        )


def list_messages(sqs, dlq_url: str, limit: int = 100) -> list[dict]:
    """Describe up to `limit` parked messages; they stay in the DLQ."""
    held: list[dict] = []
    try:
        while len(held) < limit:
            batch = _receive(sqs, dlq_url, min(10, limit - len(held)))
            if not batch:
                break
            held += batch
    finally:
        _give_back(sqs, dlq_url, held)
    return [describe(m) for m in held]


def replay(
    sqs,
    dlq_url: str,
    queue_url: str,
    ids: set[str] | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Move parked messages back to the events queue (all, or those in `ids`), unchanged.

    Each is sent before it is deleted from the DLQ, so a failure in between leaves a copy in both
    places, which storing absorbs (it is idempotent), rather than none. `progress` is told how many
    have moved after each batch.
    """
    moved: list[dict] = []
    kept: list[dict] = []
    not_deleted = 0
    try:
        while limit is None or len(moved) < limit:
            batch = _receive(sqs, dlq_url, 10)
            if not batch:
                break
            chosen: list[dict] = []
            for message in batch:
                wanted = ids is None or message["MessageId"] in ids
                room = limit is None or len(moved) + len(chosen) < limit
                (chosen if wanted and room else kept).append(message)
            for message in chosen:
                # One at a time: a batch send has a total size limit that ten bodies may exceed.
                sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
            if chosen:
                answer = sqs.delete_message_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chosen)
                    ],
                )
                not_deleted += len(answer.get("Failed", []))
            moved += chosen
            if progress is not None:
                progress(len(moved))
            if ids is not None and {m["MessageId"] for m in moved} >= ids:
                break
    finally:
        _give_back(sqs, dlq_url, kept)
    replayed = [m["MessageId"] for m in moved]
    return {
        "replayed": replayed,
        "not_deleted": not_deleted,
        "not_found": sorted((ids or set()) - set(replayed)),
    }
