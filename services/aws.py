"""boto3 clients and the queue/bucket layout, pointed at real AWS or at moto by settings alone."""

import json
import threading

import boto3
from botocore.config import Config

# Retries in botocore's "standard" mode cover throttling and 5xx; our own code retries the
# per-entry failures that SendMessageBatch reports inside a 200.
_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=32)
DLQ_MAX_RECEIVES = 5
# boto3's default session is not safe to build clients from in several threads at once.
_BUILDING = threading.Lock()


def client(settings, service: str, credentials: dict | None = None, **config):
    """A boto3 client; keyword arguments override botocore Config options (timeouts, retries).

    `credentials` (aws_access_key_id, aws_secret_access_key, aws_session_token) replace the
    service's own, for a tenant's connector.
    """
    with _BUILDING:
        return boto3.client(
            service,
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=_CONFIG.merge(Config(**config)) if config else _CONFIG,
            **(credentials or {}),
        )


def queue_url(sqs, name: str) -> str:
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


# How long SQS keeps a message (its maximum, 14 days), in the events queue and in its DLQ alike.
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600


def provision(settings, visibility_timeout: int = 60) -> dict:
    """Create the events queue with its dead-letter queue and redrive policy, and the bucket.

    Idempotent; `make run` and the tests call it, and on real AWS it documents the layout.
    """
    sqs = client(settings, "sqs")
    dlq_url = sqs.create_queue(
        QueueName=settings.events_dlq, Attributes={"MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(DLQ_MAX_RECEIVES)})
    url = sqs.create_queue(
        QueueName=settings.events_queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
            "RedrivePolicy": redrive,
        },
    )["QueueUrl"]
    s3 = client(settings, "s3")
    try:
        if settings.aws_region == "us-east-1":
            s3.create_bucket(Bucket=settings.exports_bucket)
        else:
            s3.create_bucket(
                Bucket=settings.exports_bucket,
                CreateBucketConfiguration={"LocationConstraint": settings.aws_region},
            )
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return {"queue_url": url, "dlq_url": dlq_url, "bucket": settings.exports_bucket}
