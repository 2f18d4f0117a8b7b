"""Barchart events contract (reference 000): Event in (a bare array or {"events": [...]}), EventFull out."""

from marshmallow import Schema, ValidationError, fields, validate

from shared.schemas.storage_fields import Text
from shared.storage_limits import EVENTS_COLUMNS, INTEGER_RANGES, storable


class StrictInteger(fields.Integer):
    """An integer that refuses strings and floats: "123" and 1.5 are not epoch milliseconds."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._validated(value)


_TIMESTAMP_MAX = INTEGER_RANGES[EVENTS_COLUMNS["timestamp"]][1]


class EventSchema(Schema):
    """One Barchart Event. Every field is required; unknown fields are refused.

    What the events table cannot hold (shared/storage_limits.py) is refused here too.
    """

    customer = Text(required=True, validate=validate.Length(min=1, max=256))
    product = Text(required=True, validate=validate.Length(min=1, max=256))
    type = Text(required=True, validate=validate.Length(min=1, max=256))
    timestamp = StrictInteger(required=True, validate=validate.Range(min=0, max=_TIMESTAMP_MAX))
    context = fields.List(Text(), required=True)


event_schema = EventSchema()


class EventsEnvelopeSchema(Schema):
    """The real Barchart client's body: the array wrapped in {"events": [...]}."""

    events = fields.List(fields.Nested(EventSchema), required=True)


class EventFullSchema(EventSchema):
    """EventFull: the Event plus the request's batch id and the event's 0-based index in it."""

    batch = fields.UUID(required=True)
    sequence = fields.Integer(required=True)


def validate_events(items) -> list[dict]:
    """Validate a list of events; raises ValidationError whose keys are the batch indices."""
    if not isinstance(items, list):
        raise ValidationError({"body": ['Expected a JSON array of events or {"events": [...]}.']})
    if all(_plainly_valid(item) for item in items):
        return items  # what load() would return, ten times faster on the ingest hot path
    return event_schema.load(items, many=True)  # the schema names what is wrong, and where


_NAMES = frozenset(EventSchema._declared_fields)


def _plainly_valid(item) -> bool:
    """True only for an event EventSchema would load unchanged; anything else goes to the schema."""
    return (
        type(item) is dict
        and item.keys() == _NAMES
        and all(
            type(item[name]) is str and 1 <= len(item[name]) <= 256 and storable(item[name])
            for name in ("customer", "product", "type")
        )
        and type(item["timestamp"]) is int
        and 0 <= item["timestamp"] <= _TIMESTAMP_MAX
        and type(item["context"]) is list
        and all(type(c) is str and storable(c) for c in item["context"])
    )


def event_full(event: dict, batch: str, sequence: int) -> dict:
    """EventFull: the Event plus the request's batch id and the event's 0-based index in it."""
    return {**event, "batch": batch, "sequence": sequence}
