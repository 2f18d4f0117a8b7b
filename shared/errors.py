"""Error bodies in each contract's own shape.

Every service answers bad input with one of these, so a client of a given document always sees the
shape that document promises.
"""

from marshmallow import Schema, fields


def barchart_error(code: str, message: str, children: list | None = None) -> list:
    """Barchart's validation error shape: a list of {value: {code, message}, children}."""
    return [{"value": {"code": code, "message": message}, "children": children or []}]


def formance_error(code: str, message: str) -> dict:
    """Formance's Error schema: errorCode is VALIDATION, NOT_FOUND, CONFLICT or INTERNAL."""
    return {"errorCode": code, "errorMessage": message}


# The Formance errorCode for the statuses its document names; other statuses keep their own code.
FORMANCE_CODES = {400: "VALIDATION", 404: "NOT_FOUND", 409: "CONFLICT", 500: "INTERNAL"}


def simple_error(code: str, message: str) -> dict:
    """The shape for documents that define none (Moesif, Mews, Data Cortex, our own endpoints)."""
    return {"error": {"code": code, "message": message}}


def flatten_marshmallow(messages, prefix: str = "") -> list[tuple[str, str]]:
    """Turn marshmallow's nested error dict into (field path, message) pairs.

    A batch error {3: {"timestamp": ["Not a valid integer."]}} becomes ("[3].timestamp", ...),
    so the answer names both the index in the batch and the field.
    """
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_marshmallow(value, path))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.extend((prefix or "body", m) for m in messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            out.extend(flatten_marshmallow(value, f"{prefix}[{i}]"))
    else:
        out.append((prefix or "body", str(messages)))
    return out


# --- the shapes as schemas, for the OpenAPI documents ---------------------------------------------


class ErrorCodeSchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable, e.g. INVALID_EVENT"})
    message = fields.String(required=True, metadata={"description": "names what is wrong (and where)"})


class BarchartErrorSchema(Schema):
    value = fields.Nested(ErrorCodeSchema, required=True)
    children = fields.List(fields.Raw(), required=True)


class FormanceErrorSchema(Schema):
    errorCode = fields.String(required=True, metadata={"description": "VALIDATION, NOT_FOUND, CONFLICT..."})
    errorMessage = fields.String(required=True)


class SimpleErrorSchema(Schema):
    error = fields.Nested(ErrorCodeSchema, required=True)


# Each shape function's schema: Barchart's is a list of errors.
ERROR_SCHEMAS = {
    barchart_error: BarchartErrorSchema(many=True),
    formance_error: FormanceErrorSchema(),
    simple_error: SimpleErrorSchema(),
}
