"""One settings object per service, read from environment variables.

Missing required values fail at start-up, naming the variable. Only safe, non-secret defaults
(ports, names, limits) live here; insecure development values live in deploy/dev.env.
"""

import os
from dataclasses import MISSING, dataclass, field, fields
from typing import get_args

from services import egress


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
    aws_endpoint_url: str | None = env(
        "SLUICE_AWS_ENDPOINT_URL", None, "SQS/S3 endpoint; unset for real AWS, moto server locally"
    )
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
class HttpSettings(CommonSettings):
    """What both APIs read: who stands between them and their clients."""

    trusted_proxy_hops: int = env(
        "SLUICE_TRUSTED_PROXY_HOPS",
        0,
        "proxies in front of the API whose X-Forwarded-For/-Proto/-Host are believed; 0: none, ignore them",
    )


@dataclass(frozen=True, kw_only=True)
class IngestSettings(HttpSettings):
    open_ingest_app: int | None = env(
        "SLUICE_OPEN_INGEST_APP", None, "app id that receives unauthenticated POST /events"
    )
    max_body_bytes: int = env("SLUICE_MAX_BODY_BYTES", 1_000_000, "POST /events body limit")
    max_event_bytes: int = env("SLUICE_MAX_EVENT_BYTES", 32_000, "one event's limit")
    moesif_max_body_bytes: int = env("SLUICE_MOESIF_MAX_BODY_BYTES", 250_000, "Moesif body limit")
    message_max_bytes: int = env("SLUICE_MESSAGE_MAX_BYTES", 262_144, "SQS message size limit")
    key_cache_seconds: float = env(
        "SLUICE_KEY_CACHE_SECONDS", 30.0, "how long a key lookup is trusted before asking Postgres again"
    )
    # SQS sending and the key snapshot
    sqs_send_deadline_seconds: float = env(
        "SLUICE_SQS_SEND_DEADLINE_SECONDS", 10.0, "longest a request waits for SQS before answering 503"
    )
    sqs_senders: int = env(
        "SLUICE_SQS_SENDERS", 1, "SendMessageBatch calls in flight per ingest process (shared by requests)"
    )
    sqs_linger_ms: float = env(
        "SLUICE_SQS_LINGER_MS", 100.0, "under load, longest a partial SendMessageBatch waits to fill up"
    )
    key_snapshot_path: str | None = env(
        "SLUICE_KEY_SNAPSHOT_PATH",
        None,
        "file where ingest processes share live key hashes; default: one per database in the temp directory",
    )


@dataclass(frozen=True, kw_only=True)
class TaskSettings(CommonSettings):
    """What the control API and the workers both need: Celery's broker, and link lifetimes."""

    redis_url: str = env("SLUICE_REDIS_URL", doc="Redis URL: Celery broker")
    link_expiry_seconds: int = env("SLUICE_LINK_EXPIRY_SECONDS", 900, "presigned link lifetime")
    # where connectors may deliver (services/egress.py, docs/pipelines.md): the control API checks
    # at creation, the worker at every connection
    connector_allowed_networks: str = env(
        "SLUICE_CONNECTOR_ALLOWED_NETWORKS",
        "",
        "CIDRs http connectors may reach although not public (an on-premises receiver); make run: loopback",
    )
    service_endpoints: str = env(
        "SLUICE_SERVICE_ENDPOINTS",
        "localhost:8000,localhost:8001,localhost:9540",
        "host:port of this deployment's APIs and worker metrics: never a connector's destination",
    )
    connector_s3_service_buckets: str = env(
        "SLUICE_CONNECTOR_S3_SERVICE_BUCKETS",
        "",
        "buckets s3 connectors without credentials of their own may write to with the service's",
    )

    def __post_init__(self):
        try:
            egress.parse_networks(self.connector_allowed_networks)
            egress.parse_endpoints(self.service_endpoints)
        except ValueError as exc:
            raise SettingsError(
                f"SLUICE_CONNECTOR_ALLOWED_NETWORKS / SLUICE_SERVICE_ENDPOINTS: {exc}"
            ) from None


@dataclass(frozen=True, kw_only=True)
class ControlSettings(TaskSettings, HttpSettings):
    max_body_bytes: int = env(
        "SLUICE_CONTROL_MAX_BODY_BYTES", 262_144, "largest request body the control API reads"
    )
    # accounts: login mail, sessions, rate limits
    smtp_host: str = env("SLUICE_SMTP_HOST", "127.0.0.1", "SMTP server for login mail")
    smtp_port: int = env("SLUICE_SMTP_PORT", 25)
    smtp_starttls: bool = env("SLUICE_SMTP_STARTTLS", False, "upgrade the SMTP connection with STARTTLS")
    smtp_user: str | None = env("SLUICE_SMTP_USER", None, "SMTP login, when the server wants one")
    smtp_password: str | None = env("SLUICE_SMTP_PASSWORD", None)
    mail_from: str = env("SLUICE_MAIL_FROM", "sluice@localhost", "From: address of login mail")
    public_url: str | None = env(
        "SLUICE_PUBLIC_URL",
        None,
        "control API base URL in mailed links (https: session cookies are Secure); unset: the request's "
        "Host, if SLUICE_ALLOWED_HOSTS names it",
    )
    allowed_hosts: str = env(
        "SLUICE_ALLOWED_HOSTS",
        "localhost,127.0.0.1,[::1]",
        "without SLUICE_PUBLIC_URL, the Hosts a login may name (comma-separated, `name` for any port or "
        "`name:port`); a login naming another is refused",
    )
    login_ttl_seconds: int = env("SLUICE_LOGIN_TTL_SECONDS", 900, "how long a login link and code live")
    login_max_code_attempts: int = env(
        "SLUICE_LOGIN_MAX_CODE_ATTEMPTS", 5, "wrong manual codes that lock a login attempt"
    )
    session_max_age_seconds: int = env(
        "SLUICE_SESSION_MAX_AGE_SECONDS", 604_800, "how long a verified session key works"
    )
    rate_limit_window_seconds: int = env(
        "SLUICE_RATE_LIMIT_WINDOW_SECONDS", 900, "window the rate limits below count in"
    )
    login_limit_per_email_and_address: int = env(
        "SLUICE_LOGIN_LIMIT_PER_EMAIL_AND_ADDRESS", 5, "logins per email from one client address per window"
    )
    login_limit_per_email: int = env(
        "SLUICE_LOGIN_LIMIT_PER_EMAIL", 50, "logins per email from all addresses per window (a ceiling)"
    )
    login_limit_per_address: int = env(
        "SLUICE_LOGIN_LIMIT_PER_ADDRESS", 50, "logins per client address per window"
    )
    auth_failure_limit: int = env(
        "SLUICE_AUTH_FAILURE_LIMIT", 100, "wrong keys, session keys and codes per client address per window"
    )
    # what one app may hold at once
    render_jobs_per_app: int = env(
        "SLUICE_RENDER_JOBS_PER_APP", 10, "reports and exports an app may have queued or running at once"
    )
    connectors_per_app: int = env("SLUICE_CONNECTORS_PER_APP", 20, "connectors an app may have")
    pipelines_per_app: int = env("SLUICE_PIPELINES_PER_APP", 20, "pipelines an app may have")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(TaskSettings):
    drain_threads: int = env("SLUICE_DRAIN_THREADS", 2, "SQS drain threads per worker process")
    drain_wait_seconds: int = env("SLUICE_DRAIN_WAIT_SECONDS", 10, "SQS long-poll wait")
    # the SQS drain and its metrics
    worker_metrics_port: int = env(
        "SLUICE_WORKER_METRICS_PORT", 9540, "Prometheus /metrics of a worker's main process; 0 turns it off"
    )
    worker_metrics_host: str = env("SLUICE_WORKER_METRICS_HOST", "0.0.0.0", "address it listens on")
    # reports and exports
    report_max_rows: int = env(
        "SLUICE_REPORT_MAX_ROWS", 10_000_000, "a report with more matching events ends TIMEOUT"
    )
    render_max_seconds: int = env(
        "SLUICE_RENDER_MAX_SECONDS", 3000, "a render running longer ends TIMEOUT (report) or Failed (export)"
    )
    render_part_bytes: int = env(
        "SLUICE_RENDER_PART_BYTES", 8 * 1024 * 1024, "multipart upload part size (S3 needs at least 5 MiB)"
    )
    export_file_max_bytes: int = env(
        "SLUICE_EXPORT_FILE_MAX_BYTES",
        256 * 1024 * 1024,
        "an export file is closed and the next begun at this size",
    )
    export_expiry_seconds: int = env(
        "SLUICE_EXPORT_EXPIRY_SECONDS",
        7 * 24 * 3600,
        "an export reads Expired (and its files go) this long after it completed",
    )
    job_heartbeat_seconds: float = env(
        "SLUICE_JOB_HEARTBEAT_SECONDS", 5.0, "how often a render records progress and proves it is alive"
    )
    job_stale_seconds: float = env(
        "SLUICE_JOB_STALE_SECONDS", 120.0, "a running job silent this long is retried by another worker"
    )
    job_max_attempts: int = env("SLUICE_JOB_MAX_ATTEMPTS", 3, "after this many lost attempts a job fails")
    job_sweep_seconds: float = env(
        "SLUICE_JOB_SWEEP_SECONDS",
        30.0,
        "beat interval of the sweep that retries stale jobs, expires exports and deletes deleted apps' data",
    )
    # pipeline delivery
    pipeline_threads: int = env("SLUICE_PIPELINE_THREADS", 1, "pipeline runner threads per worker process")
    pipeline_senders: int = env(
        "SLUICE_PIPELINE_SENDERS", 8, "deliveries one runner has in flight at once; one app gets half at most"
    )
    pipeline_batch_size: int = env("SLUICE_PIPELINE_BATCH_SIZE", 500, "most events in one delivery")
    pipeline_lease_seconds: float = env(
        "SLUICE_PIPELINE_LEASE_SECONDS",
        30.0,
        "how long a dead runner keeps its pipelines before another takes over",
    )
    pipeline_poll_seconds: float = env(
        "SLUICE_PIPELINE_POLL_SECONDS", 0.5, "longest wait for new events when no notification arrives"
    )
    pipeline_retry_max_seconds: float = env(
        "SLUICE_PIPELINE_RETRY_MAX_SECONDS", 300.0, "longest backoff between failed deliveries"
    )
    pipeline_deadline_seconds: float = env(
        "SLUICE_PIPELINE_DEADLINE_SECONDS",
        10.0,
        "one delivery's whole time: lookup, connect, send, the answer; at most half the lease",
    )

    def __post_init__(self):
        super().__post_init__()
        # A delivery must end while its lease is certainly still held: see services/worker/runner.py.
        if self.pipeline_deadline_seconds * 2 > self.pipeline_lease_seconds:
            raise SettingsError(
                "SLUICE_PIPELINE_DEADLINE_SECONDS must be at most half of SLUICE_PIPELINE_LEASE_SECONDS"
            )


# Variables read by the launchers (gunicorn config, `make run`), not by the applications.
LAUNCHER_VARIABLES = {
    "SLUICE_HOST": "127.0.0.1",  # make run: address both APIs bind to
    "SLUICE_INGEST_PORT": "8000",  # make run: ingest API port
    "SLUICE_CONTROL_PORT": "8001",  # make run: control API port
    "SLUICE_MOTO_PORT": "5000",  # make run: moto server port, when it starts one
    "SLUICE_STATE_DIR": ".state",  # make run: private databases, logs and run.env
    "SLUICE_MAIL_SINK_PORT": "1025",  # make run: local SMTP sink, unless SLUICE_SMTP_HOST is set
    "SLUICE_WORKER_CONCURRENCY": "2",  # make run: Celery worker processes for tasks
    "SLUICE_WEB_WORKERS": "2",  # gunicorn worker processes per API
    "SLUICE_WEB_THREADS": "8",  # gunicorn threads per worker process
    "SLUICE_ACCESS_LOG": "",  # gunicorn access log path ('-' for stdout); off if empty
}
