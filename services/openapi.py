"""Each API's OpenAPI document, generated from its Flask routes and the shared marshmallow schemas.

A view says what it takes and what it answers with `@documented(...)`, next to its route. The
document walks the app's URL map, so every documented route appears under each of its paths, with
its path parameters, and its error answers take the shape its blueprint renders them in
(services.api_errors.use_shape): the document cannot promise a shape the API does not send. A
route whose view is not documented is missing from the document, and tests/integration/test_openapi.py
fails on it.
"""

import copy
import re
from collections.abc import Iterable

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from services import api_errors
from shared.errors import ERROR_SCHEMAS
from shared.schemas.api_calls import IsoTime

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_ATTRIBUTE = "openapi_operations"

SECURITY_SCHEMES = {
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": "User name: the app id; password: one of the app's API keys.",
    },
    "moesifApplicationId": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Moesif-Application-Id",
        "description": "One of the app's API keys.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session_key",
        "description": "A verified session key (POST /api/1/login); a request body field session_key "
        "works too.",
    },
}

ERROR_DESCRIPTIONS = {
    400: "Malformed or invalid input; the message names the field (and the index in a batch).",
    401: "Missing or wrong credentials.",
    403: "Not logged in, or not a member of the organization that owns it.",
    404: "No such object; another app's is answered the same.",
    409: "The object is not in a state that allows this.",
    410: "Expired, locked or already used.",
    413: "The body is over the size limit (checked before it is parsed).",
    415: "A Content-Encoding other than gzip.",
    429: "Too many attempts from this client or for this address; retry after Retry-After seconds.",
    503: "A dependency (Postgres, SQS, mail) is not answering; retry after Retry-After seconds.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERROR_HEADERS = {429: _RETRY_AFTER, 503: _RETRY_AFTER}
_CONVERTERS = {"int": {"type": "integer", "minimum": 0}}
# A path value the route cannot take (a "/", a non-numeric id) matches no route.
_NO_ROUTE = {404: "No route for that path value (for instance an id that is not a number)."}
# gunicorn itself refuses a request line over its limit (4094 bytes), with an HTML page.
_URI_TOO_LONG = {
    "description": "The request line is over the server's limit (gunicorn: 4094 bytes); an HTML page.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
_RULE_ARGUMENT = re.compile(r"<(?:([a-z]+):)?(\w+)>")


def documented(
    summary: str,
    *,
    answers: dict,
    errors: Iterable[int] | dict[int, str] = (),
    body=None,
    body_required: bool = True,
    media: Iterable[str] = (JSON,),
    query=None,
    headers: Iterable[dict] = (),
    security: list | None = None,
    description: str = "",
    path: dict[str, dict] | None = None,
    method: str | None = None,
):
    """Document the view below: its answers ({status: (description, schema or None)}, a schema of
    several media types as {media type: schema}), the error statuses it can answer (rendered in
    its blueprint's shape), its body (a marshmallow schema, sent as each of `media`), its query
    (a marshmallow schema) and header parameters, its security, and the schema of path parameters
    narrower than their converter's ({name: schema}). `method` limits it to one of the route's
    methods."""
    operation: dict = {"summary": summary, "responses": dict(answers), "errors": errors, "path": path or {}}
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {m: {"schema": body} for m in media},
        }
    parameters = [dict(header, **{"in": "header"}) for header in headers]
    if query is not None:
        parameters.append({"in": "query", "schema": query})
    if parameters:
        operation["parameters"] = parameters
    if security is not None:
        operation["security"] = security

    def mark(view):
        view.__dict__.setdefault(_ATTRIBUTE, {})[method.upper() if method else None] = operation
        return view

    return mark


def document(app: Flask, title: str, version: str, description: str, every_route_errors: dict) -> dict:
    """The OpenAPI 3 document of every documented route of `app`.

    every_route_errors: {status: description} that any route of this app can answer.
    """
    plugin = MarshmallowPlugin()
    spec = APISpec(title, version, "3.0.3", plugins=[plugin], info={"description": description})
    plugin.map_to_openapi_type(IsoTime, "string", "date-time")
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        documented_methods = getattr(app.view_functions[rule.endpoint], _ATTRIBUTE, {})
        shapes = api_errors.shapes(app, rule.endpoint.rpartition(".")[0] or None)
        route_errors = {**every_route_errors, **(_NO_ROUTE if rule.arguments else {})}
        operations, path_schemas = {}, {}
        for http_method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = documented_methods.get(http_method, documented_methods.get(None))
            if operation is not None:
                # apispec resolves schemas in place: each document gets its own copy.
                operations[http_method.lower()] = _operation(
                    copy.deepcopy(operation), shapes, route_errors, bool(rule.arguments)
                )
                path_schemas.update(operation["path"])
        if operations:
            parameters = _path_parameters(rule, path_schemas)
            spec.path(path=openapi_path(rule.rule), operations=operations, parameters=parameters)
    return spec.to_dict()


def openapi_path(rule: str) -> str:
    """/reports/<source> -> /reports/{source}"""
    return _RULE_ARGUMENT.sub(r"{\2}", rule)


def documented_routes(app: Flask) -> set[tuple[str, str]]:
    """(METHOD, path) of every route of the app, in the document's path form."""
    return {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.rpartition(".")[2] != "static"  # files, not API routes
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def _path_parameters(rule, schemas: dict[str, dict]) -> list[dict]:
    return [
        {
            "in": "path",
            "name": name,
            "required": True,
            "schema": schemas.get(name) or _CONVERTERS.get(kind, {"type": "string"}),
        }
        for kind, name in _RULE_ARGUMENT.findall(rule.rule)
    ]


def _operation(operation: dict, shapes: tuple, every_route_errors: dict, path_parameters: bool) -> dict:
    errors = operation["errors"]
    errors = {**every_route_errors, **(errors if isinstance(errors, dict) else dict.fromkeys(errors, ""))}
    responses = {}
    for status, (text, schema) in operation["responses"].items():
        responses[str(status)] = _response(text, schema)
    shape, outage_shape = (ERROR_SCHEMAS[s] for s in shapes)
    for status in sorted(errors):
        schema = shape
        if status == 503 and outage_shape is not shape:  # an unreachable database: the outage shape
            schema = {"oneOf": [shape, outage_shape]}
        response = _response(errors[status] or ERROR_DESCRIPTIONS[status], schema)
        if status in _ERROR_HEADERS:
            response["headers"] = _ERROR_HEADERS[status]
        responses.setdefault(str(status), response)
    if operation.get("parameters") or path_parameters:  # what makes a URL long
        responses["414"] = copy.deepcopy(_URI_TOO_LONG)
    built = {key: value for key, value in operation.items() if key not in ("errors", "path")}
    built["responses"] = responses
    return built


def _response(text: str, schema) -> dict:
    response: dict = {"description": text}
    if isinstance(schema, dict) and all("/" in key for key in schema):
        response["content"] = {media: {"schema": s} for media, s in schema.items()}
    elif schema is not None:
        response["content"] = {JSON: {"schema": schema}}
    return response
