"""What the ingest routes take around the events and answer (Barchart reference 000, Moesif 001).

The events themselves are EventSchema (events.py) and MoesifEventSchema (api_calls.py).
"""

from marshmallow import INCLUDE, Schema, fields

from shared.schemas.events import EventSchema


class EventsEnvelopeSchema(Schema):
    """The real Barchart client's body: the array wrapped in {"events": [...]}."""

    events = fields.List(fields.Nested(EventSchema), required=True)


class EventFullSchema(EventSchema):
    """EventFull: the Event plus the request's batch id and the event's 0-based index in it."""

    batch = fields.UUID(required=True)
    sequence = fields.Integer(required=True)


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
