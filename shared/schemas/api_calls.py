"""Moesif event ingestion contract (reference 001), as the real `moesifapi` client speaks it.

The document requires request.time/uri/verb/ip_address and response.time/status; the client also
sends, often as explicit JSON nulls, the optional fields below. `response.verb` is listed in the
document's table but the client never sends it, so it is accepted and not required.

A loaded event is the envelope's event form for kind "moesif": the same JSON the client sent,
unknown keys dropped, times normalised to ISO 8601 in UTC ("2016-08-16T09:21:56.998000Z").
"""

from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from shared.schemas.events import StrictInteger


class IsoTime(fields.Field):
    """ISO 8601 text; a time without an offset is taken as UTC. Kept as text in UTC."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date-time."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Jsonish(fields.Raw):
    """Any JSON value (headers, bodies, metadata): kept as sent."""


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE  # newer clients add fields; dropping them beats refusing the event


class RequestSchema(_Base):
    time = IsoTime(required=True)
    uri = fields.String(required=True, validate=validate.Length(min=1, max=8192))
    verb = fields.String(required=True, validate=validate.Length(min=1, max=32))
    ip_address = fields.String(required=True, validate=validate.Length(max=64))
    headers = fields.Dict(load_default=None, allow_none=True)
    body = Jsonish(load_default=None, allow_none=True)
    api_version = fields.String(load_default=None, allow_none=True)
    transfer_encoding = fields.String(load_default=None, allow_none=True)


class ResponseSchema(_Base):
    time = IsoTime(required=True)
    status = StrictInteger(required=True, validate=validate.Range(min=100, max=999))
    verb = fields.String(load_default=None, allow_none=True)
    ip_address = fields.String(load_default=None, allow_none=True)
    headers = fields.Dict(load_default=None, allow_none=True)
    body = Jsonish(load_default=None, allow_none=True)
    transfer_encoding = fields.String(load_default=None, allow_none=True)


class MoesifEventSchema(_Base):
    request = fields.Nested(RequestSchema, required=True)
    response = fields.Nested(ResponseSchema, required=True)
    user_id = fields.String(load_default=None, allow_none=True)
    company_id = fields.String(load_default=None, allow_none=True)
    session_token = fields.String(load_default=None, allow_none=True)
    tags = fields.String(load_default=None, allow_none=True)
    metadata = Jsonish(load_default=None, allow_none=True)
    direction = fields.String(load_default=None, allow_none=True)
    weight = StrictInteger(load_default=None, allow_none=True)
    blocked_by = fields.String(load_default=None, allow_none=True)
    transaction_id = fields.String(load_default=None, allow_none=True)


moesif_event_schema = MoesifEventSchema()


def validate_moesif_events(items) -> list[dict]:
    """Validate a batch; ValidationError keys are batch indices."""
    if not isinstance(items, list):
        raise ValidationError({"body": ["Expected a JSON array of events."]})
    return moesif_event_schema.load(items, many=True)


def validate_moesif_event(item) -> dict:
    if not isinstance(item, dict):
        raise ValidationError({"body": ["Expected a JSON object (one event)."]})
    return moesif_event_schema.load(item)
