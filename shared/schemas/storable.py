"""What Postgres can store, for the control API's schemas: text without NUL characters or lone
surrogates (text and jsonb refuse both), and integers within bigint.

A value outside these is a 400 naming the field, not a failed insert (a 500).
"""

from marshmallow import fields

# Postgres bigint's largest value: an id, a position or an epoch-ms time beyond it names nothing
# storage holds, and Postgres refuses to compare with it.
BIGINT_MAX = 2**63 - 1


def storable(text: str) -> bool:
    """True when Postgres can store the text: no NUL, and it encodes to UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class _Storable(fields.Field):
    """Refuses, after the field's own deserialization, text Postgres cannot store."""

    default_error_messages = {"unstorable": "Text must not hold NUL characters or lone surrogates."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not storable(text):
            raise self.make_error("unstorable")
        return text


class StoredText(_Storable, fields.String):
    """A string that is stored (or looked up) in Postgres."""


class StoredUrl(_Storable, fields.Url):
    """A URL that is stored in Postgres."""
