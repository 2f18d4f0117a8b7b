"""marshmallow fields and validators that refuse what Postgres cannot hold.

The rules are shared/storage_limits.py's; these only turn its answers into field errors.
"""

from marshmallow import ValidationError, fields

from shared import storage_limits


def _refuse(problem: str | None) -> None:
    if problem:
        raise ValidationError(f"{problem[0].upper()}{problem[1:]}.")


def text(value: str) -> None:
    """For a string stored as text, or as a string inside jsonb."""
    _refuse(storage_limits.text_problem(value))


def json(value) -> None:
    """For any JSON value stored as (part of) a jsonb column."""
    _refuse(storage_limits.json_problem(value))


class Text(fields.String):
    """A string Postgres can store, in a text column or inside jsonb."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(text)


class Url(fields.Url):
    """A URL Postgres can store."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(text)


class Json(fields.Raw):
    """Any JSON value jsonb can hold, kept as sent."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(json)
