"""The one HTTP error path: views raise ApiError; each blueprint renders it in its document's shape.

Every refusal (bad body, failed validation, wrong credentials, rate limits, an unreachable
database, werkzeug's own HTTP errors) becomes an ApiError, and one set of app-level handlers turns
it into a response in the error shape the blueprint registered with `use_shape` (shared/errors.py
holds the shapes). Routes outside a blueprint answer in shared.errors.simple_error; a URL no route
matches (404, 405) answers in the shape of the blueprint whose routes it falls under.
"""

from collections.abc import Callable

import psycopg2
from flask import Blueprint, Flask, current_app, jsonify, request
from marshmallow import ValidationError
from psycopg2.pool import PoolError
from werkzeug.exceptions import HTTPException

from shared.errors import flatten_marshmallow, simple_error

Shape = Callable[[str, str], object]
_SHAPES = "sluice_error_shapes"  # app.extensions key: blueprint name -> _Rendering


class _Rendering:
    def __init__(self, shape: Shape, codes: dict[int, str], outage_shape: Shape):
        self.shape, self.codes, self.outage_shape = shape, codes, outage_shape


_DEFAULT = _Rendering(simple_error, {}, simple_error)


class ApiError(Exception):
    """A refusal: the HTTP status, a machine-readable code, a message naming what is wrong, headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    # The same answer for "no such id" and "another app's id": never reveal that it exists.
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def over_limit(limit: int, what: str) -> ApiError:
    """The app already holds as many of `what` as it may (a per-app limit)."""
    return ApiError(
        409, "CONFLICT", f"the app already has {limit} {what}, the most it may have: delete one first"
    )


def invalid(exc: ValidationError, code: str) -> ApiError:
    """A 400 naming the first field marshmallow refused (and its index, in a batch)."""
    field, message = flatten_marshmallow(exc.messages)[0]
    return ApiError(400, code, f"{field}: {message}")


def validated(load, value, code: str):
    """`load(value)`, or the 400 that names what is wrong with it."""
    try:
        return load(value)
    except ValidationError as exc:
        raise invalid(exc, code) from None


def unavailable(what: str, retry_after: int) -> ApiError:
    return ApiError(503, "UNAVAILABLE", what, {"Retry-After": str(retry_after)})


def use_shape(
    bp: Blueprint, shape: Shape, codes: dict[int, str] | None = None, outage_shape: Shape | None = None
) -> None:
    """Render this blueprint's errors with `shape(code, message)`.

    `codes` replaces the code by HTTP status, for documents whose error codes are a closed set.
    `outage_shape` renders the 503 of an unreachable database, when it differs from `shape`.
    """
    rendering = _Rendering(shape, codes or {}, outage_shape or shape)

    def register(state):
        state.app.extensions.setdefault(_SHAPES, {})[bp.name] = rendering

    bp.record_once(register)


def install(app: Flask) -> None:
    """The app-level handlers every Sluice API uses."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return render(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.name.upper().replace(" ", "_")
        return render(ApiError(exc.code or 500, code, exc.description or exc.name))

    @app.errorhandler(psycopg2.OperationalError)
    @app.errorhandler(PoolError)
    def database_unavailable(exc):
        # The request may well succeed later: say so rather than failing it for good.
        return render(unavailable("The database is not answering; retry shortly.", 5), outage=True)


def shapes(app: Flask, blueprint: str | None) -> tuple[Shape, Shape]:
    """(shape, outage shape) the blueprint's errors are rendered in; the document shows them."""
    rendering = app.extensions.get(_SHAPES, {}).get(blueprint, _DEFAULT)
    return rendering.shape, rendering.outage_shape


def render(exc: ApiError, outage: bool = False):
    blueprint = request.blueprint if request.url_rule is not None else _owner(request.path)
    rendering = current_app.extensions.get(_SHAPES, {}).get(blueprint, _DEFAULT)
    shape = rendering.outage_shape if outage else rendering.shape
    body = shape(rendering.codes.get(exc.status, exc.code), exc.message)
    return jsonify(body), exc.status, exc.headers


def _owner(path: str) -> str | None:
    """The blueprint of the route whose fixed start is the longest one `path` begins with (at a
    "/"): /connectors/a/b and PUT /connectors belong to the connectors routes."""
    longest, owner = 0, None
    for rule in current_app.url_map.iter_rules():
        start = rule.rule.split("<", 1)[0]
        rest = path[len(start) :]
        if len(start) > longest and path.startswith(start) and (start.endswith("/") or rest[:1] in ("", "/")):
            longest, owner = len(start), rule.endpoint.rpartition(".")[0] or None
    return owner
