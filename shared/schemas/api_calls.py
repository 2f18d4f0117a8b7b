"""Moesif event ingestion contract (reference 001), as the real `moesifapi` client and the
middlewares speak it: the events, the answers and the app config they read.

The document requires request.time/uri/verb/ip_address and response.time/status; the client also
sends, often as explicit JSON nulls, the optional fields below. `response.verb` is listed in the
document's table but the client never sends it, so it is accepted and not required.

A loaded event is the envelope's event form for kind "moesif": the same JSON the client sent,
unknown keys dropped, times normalised to ISO 8601 in UTC ("2016-08-16T09:21:56.998000Z").
What api_calls cannot hold (shared/storage_limits.py) is refused, naming the field.
"""

from datetime import UTC, datetime

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate

from shared.schemas import storage_fields
from shared.schemas.events import StrictInteger
from shared.schemas.storage_fields import Text
from shared.storage_limits import API_CALLS_COLUMNS, INTEGER_RANGES, TIME_RANGE


def _utc_text(moment: datetime) -> str:
    # isoformat, not strftime: %Y does not pad years below 1000, and Postgres reads "1-01-01" as 2001.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class IsoTime(fields.Field):
    """ISO 8601 text; a time without an offset is taken as UTC. Kept as text in UTC."""

    default_error_messages = {
        "invalid": "Not a valid ISO 8601 date-time.",
        "range": f"Must be between {_utc_text(TIME_RANGE[0])} and {_utc_text(TIME_RANGE[1])} "
        "once its offset is applied.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:  # an offset can carry a time in year 1 or 9999 past what datetime holds
            utc = parsed.astimezone(UTC)
        except OverflowError:
            raise self.make_error("range") from None
        return _utc_text(utc)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE  # newer clients add fields; dropping them beats refusing the event


class RequestSchema(_Base):
    time = IsoTime(required=True)
    uri = Text(required=True, validate=validate.Length(min=1, max=8192))
    verb = Text(required=True, validate=validate.Length(min=1, max=32))
    ip_address = Text(required=True, validate=validate.Length(max=64))
    headers = fields.Dict(load_default=None, allow_none=True, validate=storage_fields.json)
    body = storage_fields.Json(load_default=None, allow_none=True)
    api_version = Text(load_default=None, allow_none=True)
    transfer_encoding = Text(load_default=None, allow_none=True)


class ResponseSchema(_Base):
    time = IsoTime(required=True)
    status = StrictInteger(required=True, validate=validate.Range(min=100, max=999))
    verb = Text(load_default=None, allow_none=True)
    ip_address = Text(load_default=None, allow_none=True)
    headers = fields.Dict(load_default=None, allow_none=True, validate=storage_fields.json)
    body = storage_fields.Json(load_default=None, allow_none=True)
    transfer_encoding = Text(load_default=None, allow_none=True)


_WEIGHT_LOW, _WEIGHT_HIGH = INTEGER_RANGES[API_CALLS_COLUMNS["weight"]]


class MoesifEventSchema(_Base):
    request = fields.Nested(RequestSchema, required=True)
    response = fields.Nested(ResponseSchema, required=True)
    user_id = Text(load_default=None, allow_none=True)
    company_id = Text(load_default=None, allow_none=True)
    session_token = Text(load_default=None, allow_none=True)
    tags = Text(load_default=None, allow_none=True)
    metadata = storage_fields.Json(load_default=None, allow_none=True)
    direction = Text(load_default=None, allow_none=True)
    weight = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=_WEIGHT_LOW, max=_WEIGHT_HIGH)
    )
    blocked_by = Text(load_default=None, allow_none=True)
    transaction_id = Text(load_default=None, allow_none=True)


moesif_event_schema = MoesifEventSchema()


class MoesifAcceptedSchema(Schema):
    """Moesif's client reads no body; the batch id lets a producer trace its events."""

    batch = fields.UUID(required=True)
    count = fields.Integer(required=True)


class MoesifConfigSchema(Schema):
    """The app config Moesif's middlewares read (GET /v1/config): Sluice samples every call."""

    sample_rate = fields.Integer(required=True, metadata={"description": "percent of calls to send: 100"})
    user_sample_rate = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    company_sample_rate = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    regex_config = fields.List(fields.Dict(), required=True)
    user_rules = fields.Dict(required=True)
    company_rules = fields.Dict(required=True)


class GovernanceRuleSchema(Schema):
    """A Moesif governance rule (GET /v1/rules answers a list of them; Sluice has none)."""

    class Meta:
        unknown = INCLUDE


def validate_moesif_events(items) -> list[dict]:
    """Validate a batch; ValidationError keys are batch indices."""
    if not isinstance(items, list):
        raise ValidationError({"body": ["Expected a JSON array of events."]})
    return moesif_event_schema.load(items, many=True)


def validate_moesif_event(item) -> dict:
    if not isinstance(item, dict):
        raise ValidationError({"body": ["Expected a JSON object (one event)."]})
    return moesif_event_schema.load(item)
