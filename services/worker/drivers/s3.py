"""s3: each batch becomes one JSON Lines object under the connector's bucket and prefix.

The key is the batch's first position, so a retried batch overwrites its earlier attempt instead
of adding a second copy.
"""

from botocore.exceptions import BotoCoreError, ClientError

from services import aws
from services.worker.drivers.base import DeliveryFailed, Driver


class S3Driver(Driver):
    def __init__(self, config, settings, pipeline_id):
        super().__init__(config, settings, pipeline_id)
        self.bucket, self.prefix = config["bucket"], config.get("prefix", "")
        self.s3 = aws.client(settings, "s3")

    def key(self, first: tuple[str, int]) -> str:
        xid, row_id = first
        return f"{self.prefix}{self.pipeline_id}/{int(xid):020d}-{row_id:020d}.jsonl"

    def send(self, docs, first):
        body = "".join(doc + "\n" for doc in docs).encode()
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key(first), Body=body, ContentType="application/x-ndjson"
            )
        except (BotoCoreError, ClientError) as exc:
            raise DeliveryFailed(f"s3://{self.bucket}/{self.key(first)}: {exc}") from None
