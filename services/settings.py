"""One settings object per service, read from environment variables.

Missing required values fail at start-up, naming the variable. Only safe, non-secret defaults
(ports, names, limits) live here; insecure development values live in deploy/dev.env.
"""
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import get_args


class SettingsError(RuntimeError):
    pass


def env(name: str, default=MISSING, doc: str = ""):
    """A settings field read from the environment variable `name`."""
    return field(default=default, metadata={"env": name, "doc": doc})


def _cast(value: str, kind, name: str):
    kind = next((k for k in get_args(kind) if k is not type(None)), kind)  # int | None -> int
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {value!r}") from None
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
    if kind is bool:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


@dataclass(frozen=True, kw_only=True)
class CommonSettings:
    database_url: str = env("SLUICE_DATABASE_URL", doc="Postgres DSN")
    aws_endpoint_url: str | None = env("SLUICE_AWS_ENDPOINT_URL", None,
                                       "SQS/S3 endpoint; unset for real AWS, moto server locally")
    aws_region: str = env("SLUICE_AWS_REGION", "us-east-1")
    events_queue: str = env("SLUICE_EVENTS_QUEUE", "sluice-events", "SQS queue name for events")
    events_dlq: str = env("SLUICE_EVENTS_DLQ", "sluice-events-dlq", "its dead-letter queue")
    exports_bucket: str = env("SLUICE_EXPORTS_BUCKET", "sluice-exports", "S3 bucket for files")

    @classmethod
    def from_env(cls, environ=None, **overrides):
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif environ.get(name, "") != "":
                values[f.name] = _cast(environ[name], f.type, name)
            elif f.default is MISSING:
                raise SettingsError(f"{name} is required (see README; deploy/dev.env has dev values)")
        return cls(**values)

    @classmethod
    def variables(cls) -> dict[str, object]:
        """Environment variable name -> default (MISSING when required), for docs and checks."""
        return {f.metadata["env"]: f.default for f in fields(cls)}


@dataclass(frozen=True, kw_only=True)
class IngestSettings(CommonSettings):
    open_ingest_app: int | None = env("SLUICE_OPEN_INGEST_APP", None,
                                      "app id that receives unauthenticated POST /events")
    max_body_bytes: int = env("SLUICE_MAX_BODY_BYTES", 1_000_000, "POST /events body limit")
    max_event_bytes: int = env("SLUICE_MAX_EVENT_BYTES", 32_000, "one event's limit")
    moesif_max_body_bytes: int = env("SLUICE_MOESIF_MAX_BODY_BYTES", 250_000, "Moesif body limit")
    message_max_bytes: int = env("SLUICE_MESSAGE_MAX_BYTES", 262_144, "SQS message size limit")
    key_cache_seconds: float = env("SLUICE_KEY_CACHE_SECONDS", 30.0,
                                   "how long a key lookup is trusted before asking Postgres again")
    # issue 3: ingest
    sqs_send_deadline_seconds: float = env("SLUICE_SQS_SEND_DEADLINE_SECONDS", 10.0,
                                           "longest a request waits for SQS before answering 503")
    sqs_senders: int = env("SLUICE_SQS_SENDERS", 1,
                           "SendMessageBatch calls in flight per ingest process (shared by requests)")
    sqs_linger_ms: float = env("SLUICE_SQS_LINGER_MS", 100.0,
                               "under load, longest a partial SendMessageBatch waits to fill up")
    key_snapshot_path: str | None = env("SLUICE_KEY_SNAPSHOT_PATH", None,
                                        "file where ingest processes share live key hashes; "
                                        "default: one per database in the temp directory")


@dataclass(frozen=True, kw_only=True)
class ControlSettings(CommonSettings):
    redis_url: str = env("SLUICE_REDIS_URL", doc="Redis URL: Celery broker")
    link_expiry_seconds: int = env("SLUICE_LINK_EXPIRY_SECONDS", 900, "presigned link lifetime")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(CommonSettings):
    redis_url: str = env("SLUICE_REDIS_URL", doc="Redis URL: Celery broker")
    drain_threads: int = env("SLUICE_DRAIN_THREADS", 2, "SQS drain threads per worker process")
    drain_wait_seconds: int = env("SLUICE_DRAIN_WAIT_SECONDS", 10, "SQS long-poll wait")
    link_expiry_seconds: int = env("SLUICE_LINK_EXPIRY_SECONDS", 900, "presigned link lifetime")
