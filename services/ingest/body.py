"""Reading request bodies with a hard size cap, inflating gzip in a stream."""
import json
import math
import zlib

from flask import request

_CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BadBody(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


def read_json(limit: int):
    """The request's JSON, read at most `limit` bytes (after inflating) into memory.

    A gzip body is inflated chunk by chunk with zlib's max_length, so a small body that would
    inflate to gigabytes stops at the limit instead of filling memory.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnsupportedEncoding(encoding)
    if request.content_length is not None and request.content_length > limit and not _gzipped():
        raise BodyTooLarge()
    raw = _read_inflated(limit) if _gzipped() else _read_plain(limit)
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadBody("Malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and the two hooks below
        raise BadBody(f"Malformed JSON: {exc}") from None


# Python's json accepts NaN, Infinity and 1e999 (as inf); JSON, Postgres jsonb and most producers'
# parsers do not, so they must not reach the queue.
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _gzipped() -> bool:
    return request.headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip")


def _read_plain(limit: int) -> bytes:
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge()
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
                raise BodyTooLarge()
            if inflater.eof:
                break
        if not inflater.eof:
            raise BadBody("Truncated gzip body")
    except zlib.error as exc:
        raise BadBody(f"Invalid gzip body: {exc}") from None
    return bytes(out)
