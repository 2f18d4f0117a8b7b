"""s3: each batch becomes one JSON Lines object under the connector's bucket and prefix.

The key is the batch's first position, so a retried batch overwrites its earlier attempt instead
of adding a second copy.

Whose authority writes (shared.schemas.pipelines.s3_authority): the tenant's access key pair; or a
role of the tenant's that the worker assumes with STS, passing the app's external id, keeping the
credentials until shortly before they expire; or, only for buckets the operator lists in
SLUICE_CONNECTOR_S3_SERVICE_BUCKETS, the service's own, under a root of the app's own. Never into
the exports bucket (services/egress.bucket_refusal).
"""

import time

from botocore.exceptions import BotoCoreError, ClientError

from services import aws, egress
from services.worker.drivers.base import DeliveryFailed, Driver
from shared.schemas.pipelines import external_id, s3_authority

ROLE_SESSION_SECONDS = 3600
RENEW_BEFORE_EXPIRY = 300.0  # assume the role again this long before its credentials run out


class S3Driver(Driver):
    def __init__(self, config, settings, pipeline_id, app_id):
        super().__init__(config, settings, pipeline_id, app_id)
        self.config, self.settings = config, settings
        self.bucket = config["bucket"]
        self.authority = s3_authority(config)
        self.refused = egress.bucket_refusal(settings, self.bucket, self.authority)
        root = egress.service_bucket_root(app_id) if self.authority == "service" else ""
        self.prefix = root + config.get("prefix", "")
        # One attempt per call, and at most two calls (AssumeRole, PutObject) within the delivery's
        # deadline: the runner retries with backoff.
        timeout = settings.pipeline_deadline_seconds / 4
        self.options = {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"total_max_attempts": 1},
        }
        self._s3 = None
        self._expires = float("inf")  # when the assumed role's credentials run out (time.time())

    def key(self, first: tuple[str, int]) -> str:
        xid, row_id = first
        return f"{self.prefix}{self.pipeline_id}/{int(xid):020d}-{row_id:020d}.jsonl"

    def send(self, docs, first, deadline):
        if self.refused:
            raise DeliveryFailed(f"refused by policy: {self.refused}")
        if time.monotonic() >= deadline:
            raise DeliveryFailed("the deadline passed before the batch could be sent")
        body = "".join(doc + "\n" for doc in docs).encode()
        try:
            self.client().put_object(
                Bucket=self.bucket, Key=self.key(first), Body=body, ContentType="application/x-ndjson"
            )
        except ClientError as exc:  # what AWS answered: the tenant can act on it
            raise DeliveryFailed(f"s3://{self.bucket}/{self.key(first)}: {exc}") from None
        except BotoCoreError as exc:  # no answer: details would name the service's endpoint
            message = f"s3://{self.bucket}/{self.key(first)}: no answer from S3 ({type(exc).__name__})"
            raise DeliveryFailed(message) from None

    def client(self):
        """An S3 client with the connector's authority."""
        if self.authority == "role" and time.time() > self._expires - RENEW_BEFORE_EXPIRY:
            self._s3 = None
        if self._s3 is None:
            self._s3 = aws.client(self.settings, "s3", self._credentials(), **self.options)
        return self._s3

    def _credentials(self) -> dict | None:
        if self.authority == "keys":
            return {
                "aws_access_key_id": self.config["accessKeyId"],
                "aws_secret_access_key": self.config["secretAccessKey"],
            }
        if self.authority == "service":
            return None
        sts = aws.client(self.settings, "sts", **self.options)  # the service's own principal asks
        assumed = sts.assume_role(
            RoleArn=self.config["roleArn"],
            RoleSessionName=f"sluice-{self.pipeline_id}",
            ExternalId=external_id(self.app_id),
            DurationSeconds=ROLE_SESSION_SECONDS,
        )["Credentials"]
        self._expires = assumed["Expiration"].timestamp()
        return {
            "aws_access_key_id": assumed["AccessKeyId"],
            "aws_secret_access_key": assumed["SecretAccessKey"],
            "aws_session_token": assumed["SessionToken"],
        }
