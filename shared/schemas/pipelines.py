"""Formance simple ingester contract (reference 004): connectors, pipelines, states, cursor pages.

A connector is a destination: `driver` plus a `config` validated by that driver's schema. A
pipeline streams one module (a stored event stream) to one connector. This module holds the wire
shapes and the state machine; it knows nothing of HTTP or of the database.
"""

import base64
import binascii
import json
import math
import re
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from shared.enums import PipelineState
from shared.schemas import storage_fields

# Our event streams, by the table that stores them.
MODULES = ("events", "api_calls")

PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 15, 1000


class _Strict(Schema):
    class Meta:
        unknown = RAISE  # a misspelt option must not be silently ignored


class Duration(fields.Field):
    """A duration as Go writes it ("500ms", "1s", "2m") or a number of seconds; loaded as seconds."""

    default_error_messages = {"invalid": 'Not a valid duration: use "500ms", "2s", "1m" or seconds.'}
    _UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = self._finite(value)
        else:
            match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value) if isinstance(value, str) else None
            if match is None:
                raise self.make_error("invalid")
            seconds = self._finite(match[1]) * self._UNITS[match[2]]
        if not 0 <= seconds < math.inf:
            raise self.make_error("invalid")
        return seconds

    def _finite(self, number) -> float:
        try:  # a 400-digit integer does not fit a float
            return float(number)
        except OverflowError:
            raise self.make_error("invalid") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return value


_DURATION_DOC = {
    "description": 'a duration ("500ms", "2s", "1m", "1h") or a number of seconds',
    "oneOf": [
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$"},
        {"type": "number", "minimum": 0},
    ],
}


class BatchingSchema(_Strict):
    maxItems = fields.Integer(strict=True, validate=validate.Range(min=1, max=10_000), load_default=None)
    flushInterval = Duration(load_default=0.0, validate=validate.Range(max=3600), metadata=_DURATION_DOC)


# Headers a tenant may not set: they would change how the request is framed or routed (Host,
# hop-by-hop headers, Content-Length), not just what it says. Refused when a connector is created,
# and dropped at send time from connectors stored before the rule.
FORBIDDEN_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
# Headers Sluice sets on every delivery; a tenant's own value (in any letter case) is replaced.
SLUICE_HEADERS = frozenset({"content-type", "x-sluice-pipeline"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF or other control characters
MAX_HEADERS, MAX_HEADER_BYTES = 50, 8192

# What every read shows instead of a secret: connector secrets are write-only.
REDACTED = "<redacted>"


def forbidden_header(name: str) -> bool:
    name = name.lower()
    return name in FORBIDDEN_HEADERS or name.startswith("proxy-")


def sendable_headers(headers: dict) -> dict:
    """A connector's headers without those it may not set or that Sluice sets itself."""
    return {
        name: value
        for name, value in headers.items()
        if not forbidden_header(name) and name.lower() not in SLUICE_HEADERS
    }


def _check_headers(headers: dict) -> None:
    if len(headers) > MAX_HEADERS:
        raise ValidationError(f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValidationError(f"{name!r} is not a valid header name")
        if forbidden_header(name):
            raise ValidationError(
                f"{name} cannot be set: Host, Content-Length and hop-by-hop headers are Sluice's"
            )
        if not _FIELD_VALUE.fullmatch(value) or len(value) > MAX_HEADER_BYTES:
            raise ValidationError(
                f"{name}: a header value is at most {MAX_HEADER_BYTES} characters, without CR or LF"
            )
        if value == REDACTED:
            raise ValidationError(f"{name}: {REDACTED} is what reads show; send the real value")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValidationError("credentials in the URL are not allowed: send them as headers (kept secret)")
    if not (parts.hostname or "").isascii():
        raise ValidationError("write an international host name in its ASCII (xn--) form")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise ValidationError("the port must be between 1 and 65535") from None


class HttpConfigSchema(_Strict):
    url = storage_fields.Url(required=True, schemes={"http", "https"}, require_tld=False, validate=_check_url)
    headers = fields.Dict(
        keys=storage_fields.Text(validate=validate.Length(min=1)),
        values=storage_fields.Text(),
        load_default=dict,
        validate=_check_headers,
    )
    batching = fields.Nested(BatchingSchema, load_default=lambda: BatchingSchema().load({}))


def external_id(app_id: int) -> str:
    """The ExternalId Sluice passes when it assumes a tenant's role: one per app, never chosen by
    the tenant, so no app can have Sluice assume a role another app's owner set up (the confused
    deputy AWS's cross-account guidance warns of)."""
    return f"sluice-app-{app_id}"


class S3ConfigSchema(_Strict):
    """Where, and with whose authority: the tenant's access key pair, a role of theirs that Sluice
    assumes, or neither (the service's own credentials, only for buckets the operator allows)."""

    bucket = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"))
    prefix = storage_fields.Text(load_default="", validate=validate.Length(max=512))
    accessKeyId = fields.String(validate=validate.Regexp(r"^[A-Z0-9]{16,128}$"))
    secretAccessKey = storage_fields.Text(
        validate=[validate.Length(min=1, max=128), validate.NoneOf([REDACTED])]
    )
    roleArn = fields.String(validate=validate.Regexp(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$"))
    externalId = fields.Raw()  # shown on reads, never taken: see external_id
    batching = fields.Nested(BatchingSchema, load_default=lambda: BatchingSchema().load({}))

    @validates_schema
    def _one_authority(self, data, **kwargs):
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", data.get("bucket", "")):
            raise ValidationError("a bucket name cannot look like an IP address", "bucket")
        keys = ("accessKeyId" in data) + ("secretAccessKey" in data)
        if keys == 1:
            raise ValidationError("give accessKeyId and secretAccessKey together", "secretAccessKey")
        if keys and "roleArn" in data:
            raise ValidationError("give either an access key pair or roleArn, not both", "roleArn")
        if "externalId" in data:
            raise ValidationError(
                "Sluice sets the external id (read the connector to see it); leave it out", "externalId"
            )


def s3_authority(config: dict) -> str:
    """'keys', 'role' or 'service': whose credentials an s3 connector writes with."""
    if "accessKeyId" in config:
        return "keys"
    return "role" if "roleArn" in config else "service"


class EmptyConfigSchema(_Strict):
    """stdout and noop take no options (batching only)."""

    batching = fields.Nested(BatchingSchema, load_default=lambda: BatchingSchema().load({}))


DRIVER_CONFIGS = {
    "http": HttpConfigSchema,
    "s3": S3ConfigSchema,
    "stdout": EmptyConfigSchema,
    "noop": EmptyConfigSchema,
}


class ConnectorConfigurationSchema(_Strict):
    driver = fields.String(required=True, validate=validate.OneOf(sorted(DRIVER_CONFIGS)))
    config = fields.Dict(
        required=True,
        metadata={
            "description": "the driver's options: http {url, headers, batching}, s3 {bucket, prefix, "
            "batching}, stdout and noop {batching}; batching is {maxItems, flushInterval}"
        },
    )

    @validates_schema
    def _config_fits_driver(self, data, **kwargs):
        driver = DRIVER_CONFIGS[data["driver"]]()
        try:
            data["config"] = driver.load(data["config"])
        except ValidationError as exc:
            raise ValidationError({"config": exc.messages}) from None


class PipelineConfigurationSchema(_Strict):
    module = fields.String(required=True, validate=validate.OneOf(MODULES))
    connectorID = fields.String(required=True, validate=validate.Length(min=1, max=64))


def config_view(driver: str, config: dict, app_id: int) -> dict:
    """A connector's config as every read shows it: secrets redacted (header names stay visible),
    and for an s3 role the ExternalId to put in its trust policy."""
    view = dict(config)
    if driver == "http":
        view["headers"] = dict.fromkeys(config.get("headers", {}), REDACTED)
    if driver == "s3" and "secretAccessKey" in config:
        view["secretAccessKey"] = REDACTED
    if driver == "s3" and "roleArn" in config:
        view["externalId"] = external_id(app_id)
    return view


def load_connector(body) -> dict:
    """{driver, config} with config validated (and defaults filled) by its driver; else ValidationError."""
    if not isinstance(body, dict):
        raise ValidationError({"body": ["Expected a JSON object {driver, config}."]})
    return ConnectorConfigurationSchema().load(body)


def load_pipeline(body) -> dict:
    if not isinstance(body, dict):
        raise ValidationError({"body": ["Expected a JSON object {module, connectorID}."]})
    return PipelineConfigurationSchema().load(body)


# --- the state machine -------------------------------------------------------------------------


class TransitionNotAllowed(ValueError):
    pass


_RUNNING = {PipelineState.INIT.value, PipelineState.READY.value}


def initial_state() -> dict:
    return {"label": PipelineState.INIT.value}


def transition(state: dict, action: str) -> dict:
    """The state after `action`, or TransitionNotAllowed.

    pause and stop keep the state they left as previousState; resume and start return to it
    (stopping a paused pipeline keeps the whole chain, so start brings back PAUSE). reset is allowed
    from anywhere and starts over in INIT.
    """
    label = state["label"]
    if action == "pause" and label in _RUNNING:
        return {"label": PipelineState.PAUSE.value, "previousState": state}
    if action == "stop" and label != PipelineState.STOP.value:
        return {"label": PipelineState.STOP.value, "previousState": state}
    if action == "resume" and label == PipelineState.PAUSE.value:
        return state["previousState"]
    if action == "start" and label == PipelineState.STOP.value:
        return state["previousState"]
    if action == "reset":
        return initial_state()
    if action not in ACTIONS:
        raise ValueError(action)
    raise TransitionNotAllowed(f"cannot {action} a pipeline in state {label}")


ACTIONS = ("pause", "resume", "start", "stop", "reset")


# --- cursors -------------------------------------------------------------------------------------


def encode_token(data: dict) -> str:
    """An opaque page or position token: base64 of compact JSON."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_token(token: str) -> dict:
    """The dict inside a token; ValueError when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError):
        raise ValueError("not a valid cursor") from None
    if not isinstance(data, dict):
        raise ValueError("not a valid cursor")
    return data


def state_view(state: dict, cursor: str) -> dict:
    """The Formance State: label, the cursor (on the current state), and previousState."""
    view = {"label": state["label"], "cursor": cursor}
    if state.get("previousState"):
        view["previousState"] = _nested_state(state["previousState"])
    return view


def _nested_state(state: dict) -> dict:
    view = {"label": state["label"]}
    if state.get("previousState"):
        view["previousState"] = _nested_state(state["previousState"])
    return view


def page(rows: list[dict], page_size: int, has_more: bool, previous: str, next_: str) -> dict:
    return {
        "cursor": {
            "pageSize": page_size,
            "hasMore": has_more,
            "previous": previous,
            "next": next_,
            "data": rows,
        }
    }


# --- answers and query parameters, for the OpenAPI document ---------------------------------------


class ActingAppSchema(Schema):
    app_id = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,18}$"),
        metadata={"description": "with a session key: the app to act for (or the X-Sluice-App header)"},
    )


class PageQuerySchema(ActingAppSchema):
    pageSize = fields.Integer(
        validate=validate.Range(min=1, max=PAGE_SIZE_MAX),
        metadata={"description": f"rows per page (default {PAGE_SIZE_DEFAULT}, or the cursor's)"},
    )
    cursor = fields.String(metadata={"description": "a page's previous or next token"})


class ConnectorSchema(Schema):
    id = fields.UUID(required=True)
    driver = fields.String(required=True, validate=validate.OneOf(sorted(DRIVER_CONFIGS)))
    config = fields.Dict(required=True, metadata={"description": "as the driver loaded it, defaults filled"})
    createdAt = fields.DateTime(required=True)


class ConnectorAnswerSchema(Schema):
    data = fields.Nested(ConnectorSchema, required=True)


class StateSchema(Schema):
    label = fields.Enum(PipelineState, required=True)
    cursor = fields.String(metadata={"description": "the saved position; empty before any delivery"})
    previousState = fields.Nested(lambda: StateSchema())


class PipelineErrorSchema(Schema):
    message = fields.String(required=True)
    at = fields.DateTime(required=True)
    failures = fields.Integer(required=True)


class PipelineSchema(Schema):
    id = fields.UUID(required=True)
    module = fields.String(required=True, validate=validate.OneOf(MODULES))
    connectorID = fields.UUID(required=True)
    state = fields.Nested(StateSchema, required=True)
    createdAt = fields.DateTime(required=True)
    delivered = fields.Integer(required=True, metadata={"description": "events delivered (ours)"})
    lastError = fields.Nested(PipelineErrorSchema, required=True, allow_none=True)


class PipelineAnswerSchema(Schema):
    data = fields.Nested(PipelineSchema, required=True)


class _Cursor(Schema):
    pageSize = fields.Integer(required=True)
    hasMore = fields.Boolean(required=True)
    previous = fields.String(required=True)
    next = fields.String(required=True)


class ConnectorCursorSchema(_Cursor):
    data = fields.List(fields.Nested(ConnectorSchema), required=True)


class PipelineCursorSchema(_Cursor):
    data = fields.List(fields.Nested(PipelineSchema), required=True)


class ConnectorPageSchema(Schema):
    cursor = fields.Nested(ConnectorCursorSchema, required=True)


class PipelinePageSchema(Schema):
    cursor = fields.Nested(PipelineCursorSchema, required=True)
