"""Reading a JSON request body with a hard size cap, inflating gzip in a stream.

Every refusal is an ApiError: 413 for a body over the limit (before or after inflating), 400 for
malformed JSON or gzip, 415 for a Content-Encoding other than gzip.
"""

import functools
import io
import json
import math
import zlib

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from services.api_errors import ApiError, render
from shared import jsontext

_CHUNK = 64 * 1024


def read_json(limit: int):
    """The request's JSON, read at most `limit` bytes (after inflating) into memory.

    A gzip body is inflated chunk by chunk with zlib's max_length, so a small body that would
    inflate to gigabytes stops at the limit instead of filling memory.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ApiError(
            415, "UNSUPPORTED_ENCODING", f"Content-Encoding {encoding} is not supported; use gzip."
        )
    gzipped = encoding in ("gzip", "x-gzip")
    if request.content_length is not None and request.content_length > limit and not gzipped:
        raise too_large(limit)
    raw = _read_inflated(limit) if gzipped else _read_plain(limit)
    try:
        return jsontext.loads(raw, _STRICT_LOADS)
    except RecursionError:
        raise malformed("Malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and the two hooks below
        raise malformed(f"Malformed JSON: {exc}") from None


def cap_bodies(app: Flask, limit: int) -> None:
    """Refuse every request whose body is over `limit` bytes with 413, before anything reads it.

    A declared Content-Length is checked before the view runs. A chunked body (no Content-Length)
    is read into memory up to the limit before the view runs, and handed on with its length: one
    byte more is a 413. (werkzeug alone would cut such a body off at the limit, silently.)
    """
    app.config["MAX_CONTENT_LENGTH"] = limit  # what werkzeug reads past this raises 413 too

    @app.before_request
    def refuse_large_bodies():
        environ = request.environ
        if request.content_length is not None:
            if request.content_length > limit:
                raise too_large(limit)
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = _read_up_to(environ["wsgi.input"], limit + 1)
            if len(body) > limit:
                raise too_large(limit)
            environ.update(
                {
                    "wsgi.input": io.BytesIO(body),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_TRANSFER_ENCODING": "",
                }
            )

    @app.errorhandler(RequestEntityTooLarge)
    def cut_off(exc):
        return render(too_large(limit))


def _read_up_to(stream, size: int) -> bytes:
    out = bytearray()
    while len(out) < size and (chunk := stream.read(min(_CHUNK, size - len(out)))):
        out += chunk
    return bytes(out)


def has_body() -> bool:
    return bool(request.content_length or request.headers.get("Transfer-Encoding"))


def too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"Body is over {limit} bytes.")


def malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_JSON", message)


# Python's json accepts NaN, Infinity and 1e999 (as inf); JSON, Postgres jsonb and most producers'
# parsers do not, so they must not reach the queue.
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


_STRICT_LOADS = functools.partial(json.loads, parse_constant=_refuse_constant, parse_float=_finite_float)


def _read_plain(limit: int) -> bytes:
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data


def _read_inflated(limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    stream = request.stream
    try:
        while True:
            chunk = inflater.unconsumed_tail or stream.read(_CHUNK)
            if not chunk:
                break
            out += inflater.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit:
                raise too_large(limit)
            if inflater.eof:
                break
        if not inflater.eof:
            raise malformed("Truncated gzip body")
    except zlib.error as exc:
        raise malformed(f"Invalid gzip body: {exc}") from None
    return bytes(out)
