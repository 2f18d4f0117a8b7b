"""What Postgres can hold, stated once: the APIs refuse everything else with a 400.

The columns are those the migrations create for `events` (Barchart, 0001) and `api_calls`
(Moesif, 0001, 0003, 0006 and the transaction_id index of 0008) in a UTF8 database.
tests/integration/test_storage_limits.py checks every statement here against the migrated
database, so the two cannot drift apart.

- text, and every string inside jsonb (object keys included): any Unicode except U+0000, which
  Postgres refuses in text and in jsonb ("\\u0000"), and a lone surrogate (U+D800..U+DFFF not in a
  pair), which is not Unicode text at all. U+FFFE, U+FFFF and every other character are fine.
- integer: -2**31 .. 2**31-1; bigint: -2**63 .. 2**63-1.
- timestamptz: Postgres holds 4714-11-24 BC .. 294276-12-31 AD, but a stored Moesif time is also
  kept as UTC ISO 8601 text with a four-digit year (inside the request and response jsonb), and
  Python's datetime, which reads it back (psycopg2 too), holds years 1 .. 9999. So after its
  offset is applied a time must fall in TIME_RANGE (0001-01-01T00:00:00Z ..
  9999-12-31T23:59:59.999999Z); `0001-01-01T00:00:00+14:00` is 1 BC in UTC and is refused.
- jsonb numbers are `numeric`: finite (no NaN or Infinity), at most 131072 digits before the
  point and 16383 after. Every finite double and every integer Python's JSON parser accepts
  (4300 digits at most) fits.
- JSON nesting: at most MAX_JSON_DEPTH levels. Not a Postgres limit (jsonb takes thousands): every
  reader of a stored event (the drain, pipelines, exports, `sluice dlq export`) parses it with
  Python's recursive json module, deeper inside its own stack than ingest was, so ingest keeps a
  wide margin below Python's recursion limit.
"""

import math
import re
from datetime import UTC, datetime

TEXT = "text"
INTEGER = "integer"
BIGINT = "bigint"
TIMESTAMPTZ = "timestamp with time zone"  # information_schema's name for it
JSONB = "jsonb"
UUID = "uuid"

# Barchart Event field -> its column in `events`.
EVENTS_COLUMNS = {
    "customer": TEXT,
    "product": TEXT,
    "type": TEXT,
    "timestamp": BIGINT,
    "context": JSONB,
}

# `api_calls` column -> type, for every column the drain fills from a Moesif event.
API_CALLS_COLUMNS = {
    "request_time": TIMESTAMPTZ,
    "response_time": TIMESTAMPTZ,
    "uri": TEXT,
    "verb": TEXT,
    "status": INTEGER,
    "ip_address": TEXT,
    "user_id": TEXT,
    "company_id": TEXT,
    "session_token": TEXT,
    "direction": TEXT,
    "weight": INTEGER,
    "transaction_id": TEXT,
    "tags": TEXT,
    "blocked_by": TEXT,
    "metadata": JSONB,
    "request": JSONB,
    "response": JSONB,
}

# Columns ingest fills, not the producer: the same in both tables.
ENVELOPE_COLUMNS = {"app_id": BIGINT, "batch": UUID, "sequence": INTEGER, "received_at": TIMESTAMPTZ}

INTEGER_RANGES = {INTEGER: (-(2**31), 2**31 - 1), BIGINT: (-(2**63), 2**63 - 1)}
# An id, a position or an epoch-ms time beyond it names nothing storage holds, and Postgres
# refuses to compare a bigint column with it.
BIGINT_MAX = INTEGER_RANGES[BIGINT][1]
TIME_RANGE = (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
TIMESTAMPTZ_POSTGRES_RANGE = ("4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999+00")
MAX_JSON_DEPTH = 256
NUMERIC_MAX_INTEGER_DIGITS = 131072
_NUMERIC_LIMIT = 10**NUMERIC_MAX_INTEGER_DIGITS

# One search finds either character Postgres cannot keep in text.
UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """True when Postgres can store the text (text_problem's yes or no, on the hot path)."""
    # isascii() is a flag lookup, and ASCII text holds no surrogate: 4x faster than the regex alone.
    return "\x00" not in text if text.isascii() else not UNSTORABLE_CHARACTER.search(text)


def text_problem(value: str) -> str | None:
    """Why Postgres cannot store this string, or None."""
    found = UNSTORABLE_CHARACTER.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains U+0000 (NUL), which Postgres cannot store"
    return f"contains a lone surrogate U+{ord(found.group()):04X}, which is not Unicode text"


def integer_problem(value: int, column_type: str) -> str | None:
    """Why an integer does not fit the column type (INTEGER or BIGINT), or None."""
    low, high = INTEGER_RANGES[column_type]
    if low <= value <= high:
        return None
    return f"must be between {low} and {high} (the {column_type} range)"


def json_problem(value) -> str | None:
    """Why a parsed JSON value cannot be stored as jsonb, naming where inside it, or None.

    Walks with a stack of its own, so depth costs no Python recursion.
    """
    pending: list[tuple[object, str, int]] = [(value, "", 1)]
    while pending:
        node, path, depth = pending.pop()
        if isinstance(node, (dict, list)) and depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(node, str):
            problem = text_problem(node)
        elif isinstance(node, dict):
            problem = None
            for key, item in node.items():
                key_path = f"{path}[{_quoted(key)}]"
                problem = text_problem(key) if isinstance(key, str) else "an object key must be a string"
                if problem:
                    return _at(key_path, f"key {problem}")
                pending.append((item, key_path, depth + 1))
        elif isinstance(node, list):
            problem = None
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, float):
            problem = None if math.isfinite(node) else "numbers must be finite"
        elif node is None or isinstance(node, (bool, int)):
            problem = _digits_problem(node) if type(node) is int else None
        else:
            problem = f"{type(node).__name__} is not a JSON value"
        if problem:
            return _at(path, problem)
    return None


def _digits_problem(value: int) -> str | None:
    if -_NUMERIC_LIMIT < value < _NUMERIC_LIMIT:
        return None
    return f"numbers may have at most {NUMERIC_MAX_INTEGER_DIGITS} digits"


def _quoted(key: str) -> str:
    # Keys may hold anything (a NUL, a surrogate, 30 KB): show them short and escaped, in ASCII.
    return ascii(key) if len(key) <= 40 else ascii(key[:40]) + "..."


def _at(path: str, problem: str) -> str:
    return f"at {path}: {problem}" if path else problem
