"""Reading request bodies with a hard size cap, inflating gzip in a stream."""
import json
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
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBody(f"Malformed JSON: {exc}") from None


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
