"""Data Cortex accounts contract (reference 003): email login, the user, apps and their keys.

The views read each parameter from the JSON body, the form body or the query string (the document
sends them either way); these schemas describe the parameters and the answers.
"""

from marshmallow import EXCLUDE, Schema, fields, validate

from shared.enums import KeyScope
from shared.schemas import storage_fields

MAX_NAME = 200
MAX_EMAIL = 254  # RFC 5321's limit for a forward path
EMAIL_PATTERN = r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$"

_SESSION_KEY = fields.String(
    metadata={"description": "the session key, when not sent as the session_key cookie"}
)
_ID = {"description": "a numeric id (a number, or a string of digits)"}
_NOT_EMAIL = "Not a valid email address."


class _Parameters(Schema):
    class Meta:
        unknown = EXCLUDE  # a view reads the parameters it needs and ignores the rest


class LoginSchema(_Parameters):
    email = storage_fields.Text(
        required=True,
        validate=[
            validate.Length(max=MAX_EMAIL, error=_NOT_EMAIL),
            validate.Regexp(EMAIL_PATTERN, error=_NOT_EMAIL),
        ],
    )


class LoginAnswerSchema(Schema):
    result = fields.String(required=True, validate=validate.OneOf(["new_browser"]))
    session_key = fields.String(required=True, metadata={"description": "works once the link is verified"})
    manual_code = fields.String(required=True, metadata={"description": "to type on the verification page"})


class ManualCodeSchema(_Parameters):
    manual_code = fields.String(required=True)


class SessionSchema(_Parameters):
    session_key = _SESSION_KEY


class OrgSchema(Schema):
    org_id = fields.Integer(required=True)
    name = fields.String(required=True)


class UserSchema(Schema):
    user_id = fields.Integer(required=True)
    email = fields.String(required=True)
    display_name = fields.String(required=True, allow_none=True)
    org_list = fields.List(fields.Nested(OrgSchema), required=True)


class AppQuerySchema(_Parameters):
    """GET /app: list an org's apps, or create one when app_name is given (the document's form)."""

    org_id = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{1,19}$"), metadata=_ID)
    app_name = storage_fields.Text(validate=validate.Length(min=1, max=MAX_NAME))


class CreateAppSchema(_Parameters):
    org_id = fields.Raw(required=True, metadata={**_ID, "oneOf": [{"type": "integer"}, {"type": "string"}]})
    app_name = storage_fields.Text(required=True, validate=validate.Length(min=1, max=MAX_NAME))
    session_key = _SESSION_KEY


_SCOPE = fields.String(
    validate=validate.OneOf([scope.value for scope in KeyScope]),
    metadata={"description": "ingest: posts events only (ship this one); admin: also the control API"},
)


class NewKeySchema(SessionSchema):
    """POST /app/{app_id}/key: the new key's scope, ingest unless admin is asked for."""

    scope = _SCOPE


class KeySummarySchema(Schema):
    key_id = fields.Integer(required=True)
    prefix = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    scope = fields.String(required=True, validate=_SCOPE.validate, metadata=_SCOPE.metadata)


class AppSchema(Schema):
    app_id = fields.Integer(required=True)
    name = fields.String(required=True)
    api_key_list = fields.List(
        fields.String(), required=True, metadata={"description": "each key's prefix: secrets are never kept"}
    )
    api_keys = fields.List(fields.Nested(KeySummarySchema), required=True)


class AppListSchema(Schema):
    app_list = fields.List(fields.Nested(AppSchema), required=True)


class AppCreatedSchema(Schema):
    app_id = fields.Integer(required=True)


class AppDeletedSchema(Schema):
    result = fields.String(required=True, validate=validate.OneOf(["deleted"]))
    app_id = fields.Integer(required=True)


class KeyCreatedSchema(Schema):
    app_id = fields.Integer(required=True)
    key_id = fields.Integer(required=True)
    api_key = fields.String(required=True, metadata={"description": "the secret, shown this once"})
    prefix = fields.String(required=True)
    scope = fields.String(required=True, validate=_SCOPE.validate, metadata=_SCOPE.metadata)


class KeyRevokedSchema(Schema):
    result = fields.String(required=True, validate=validate.OneOf(["revoked"]))
    app_id = fields.Integer(required=True)
    key_id = fields.Integer(required=True)


class LoggedOutSchema(Schema):
    result = fields.String(required=True, validate=validate.OneOf(["logged_out"]))
