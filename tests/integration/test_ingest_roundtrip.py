"""Property: whatever ingest accepts is stored, unchanged; whatever it refuses gets a 400 naming a
value that storage (or the contract) cannot take. Never a 500, never a parked event.

Generated requests, with nasty strings (NUL, lone surrogates, U+FFFE/U+FFFF, very long, any
Unicode), nasty numbers (at and beyond integer and bigint, floats, huge exponents as the producer
wrote them), nasty times and nested JSON, go through the real ingest app (Flask test client, moto
SQS) and the real drain into the test Postgres. Whether a refused value is really unstorable is
asked of Postgres itself, not of shared/storage_limits.py.

SLUICE_PROPERTY_EXAMPLES sets the examples per route (default 40, as `make test` runs it).
"""

import json
import math
import os
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import hypothesis
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.ingest.app import create_app
from services.settings import IngestSettings
from shared.schemas.api_calls import MoesifEventSchema, RequestSchema, ResponseSchema
from shared.storage_limits import MAX_JSON_DEPTH
from tests.helpers import query, refuses, wait_for

EXAMPLES = int(os.environ.get("SLUICE_PROPERTY_EXAMPLES", "40"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,  # real SQS and Postgres round trips
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the app, queue and tenant serve every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# --- what producers send -------------------------------------------------------------------------


class Literal(str):
    """A JSON number exactly as a producer wrote it (json.dumps cannot write 1e400 or -0)."""


def body_text(value) -> str:
    if isinstance(value, Literal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{body_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(body_text(v) for v in value) + "]"
    return json.dumps(value)  # ASCII escapes: a lone surrogate travels as \ud800


# Characters Postgres, COPY's text format, JSON or SQS treat specially; "\\" "N" and "\\" "." are
# COPY markers when they meet. The first five Postgres cannot store.
NASTY = '\x00\ud800\udbff\udc00\udfff\ufffe\uffff\U0010ffff\t\n\r\\N.\u00e9\u2028\x7f"'
STORABLE_NASTY = NASTY[5:]
WIDE = "a\u00e9\u4e2d\U0001f600"  # 1 to 4 UTF-8 bytes
any_characters = st.one_of(st.characters(exclude_categories=()), st.sampled_from(NASTY))
storable_characters = st.one_of(
    st.characters(exclude_categories=("Cs",), exclude_characters=NASTY[:5]), st.sampled_from(STORABLE_NASTY)
)
offsets = st.sampled_from(
    [None, UTC, *(timezone(timedelta(minutes=m)) for m in (14 * 60, -14 * 60, -(23 * 60 + 59)))]
)
EDGE_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "0999-06-01T12:00",
    "9999-12-31T23:59:59.999999-00:01",
    "9999-12-31T23:59:59.999999+00:01",
]
# Numbers as producers write them (json.dumps would not); "1e400" and "-1e999" are beyond a double.
LITERALS = ["1e308", "1E-400", "1e-999", "-0", "-0.0", "1.5e+2", "0.10000000000000000001"]
EDGE_INTEGERS = [2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 10**300]


def maybe(strategy):
    return st.none() | strategy


TEXT_FIELDS = ("user_id", "company_id", "session_token", "tags", "direction", "blocked_by", "transaction_id")


class Strategies:
    """Events of one flavour. Clean events hold only what storage keeps (nasty but storable:
    U+FFFE, COPY's markers, the longest fields, the edge integers and times that fit), so about
    half the examples test the stored rows; the others may hold anything."""

    def __init__(self, clean: bool):
        self.clean = clean
        characters = storable_characters if clean else any_characters
        nasty = STORABLE_NASTY if clean else NASTY
        self.texts = lambda min_size=0, max_size=40: st.one_of(
            st.text(characters, min_size=min_size, max_size=max_size),
            # one nasty character inside text that is otherwise plain
            st.builds(
                lambda a, c, b: a + c + b,
                st.text(characters, max_size=max_size // 2 - 1),
                st.sampled_from(nasty),
                st.text(characters, max_size=max_size // 2 - 1),
            ),
            # the longest the field takes
            st.text(st.sampled_from(WIDE), min_size=max(min_size, max_size - 2), max_size=max_size),
        )
        self.numbers = st.one_of(
            st.integers(),
            st.sampled_from(EDGE_INTEGERS),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from(LITERALS + ([] if clean else ["1e400", "-1e999"])).map(Literal),
        )
        self.json = st.recursive(
            st.none() | st.booleans() | self.numbers | self.texts(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(self.texts(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        )
        deepest = MAX_JSON_DEPTH if clean else MAX_JSON_DEPTH + 2
        self.deep_json = st.integers(MAX_JSON_DEPTH - 2, deepest).map(lambda n: json.loads("[" * n + "]" * n))
        years = (2, 9998) if clean else (1, 9999)  # an offset cannot carry these outside 1..9999
        any_time = st.builds(
            lambda moment, tz: moment.replace(tzinfo=tz).isoformat(),
            st.datetimes(datetime(years[0], 1, 1), datetime(years[1], 12, 31, 23, 59, 59, 999999)),
            offsets,
        )
        self.times = any_time if clean else st.one_of(any_time, st.sampled_from(EDGE_TIMES))

    def integer(self, low: int, high: int):
        if self.clean:
            return st.one_of(st.integers(low, high), st.sampled_from([low, high]))
        return st.one_of(st.integers(low, high), self.numbers)

    def barchart(self):
        return st.fixed_dictionaries(
            {
                "customer": self.texts(1, 256),
                "product": self.texts(1, 20),
                "type": self.texts(1, 20),
                "timestamp": self.integer(0, 2**63 - 1),
                "context": st.lists(self.texts(max_size=600), max_size=4),
            }
        )

    def moesif(self):
        texts = self.texts
        headers = st.dictionaries(texts(max_size=20), self.json, max_size=3)
        return st.fixed_dictionaries(
            {
                "request": st.fixed_dictionaries(
                    {
                        "time": self.times,
                        "uri": texts(1, 200),
                        "verb": texts(1, 32),
                        "ip_address": texts(0, 64),
                    },
                    optional={
                        "headers": maybe(headers),
                        "body": self.json | self.deep_json,
                        "api_version": maybe(texts()),
                        "transfer_encoding": maybe(texts()),
                    },
                ),
                "response": st.fixed_dictionaries(
                    {"time": self.times, "status": st.integers(100, 999)},
                    optional={"headers": maybe(headers), "body": self.json},
                ),
            },
            optional={
                **{name: maybe(texts()) for name in TEXT_FIELDS},
                "metadata": self.json,
                "weight": maybe(self.integer(-(2**31), 2**31 - 1)),
            },
        )


CLEAN, ANYTHING = Strategies(clean=True), Strategies(clean=False)
barchart_requests = st.one_of(
    *(st.lists(flavour.barchart(), min_size=1, max_size=3) for flavour in (CLEAN, ANYTHING))
)
moesif_requests = st.one_of(
    *(st.lists(flavour.moesif(), min_size=1, max_size=3) for flavour in (CLEAN, ANYTHING))
)


# --- the round trip ------------------------------------------------------------------------------


@pytest.fixture
def pipeline(stack, names, tenant, drainer):
    return create_app(stack.settings(IngestSettings, **names)).test_client(), drainer, tenant


def stored(stack, pipeline, path: str, events: list, table: str, columns: str) -> tuple[list, list] | None:
    """POST the events and, if ingest accepts them, drain: (the events as sent, their rows' columns).

    None when ingest refused them, having checked that it was right to.
    """
    ingest, drainer, (app_id, key) = pipeline
    text = body_text(events)
    headers = {"Content-Type": "application/json", "X-Moesif-Application-Id": key}
    resp = ingest.post(path, data=text.encode(), headers=headers, auth=(str(app_id), key))
    hypothesis.event(f"answered {resp.status_code}")  # --hypothesis-show-statistics: how many stored
    sent = json.loads(text)  # as ingest reads it: numbers as Python's json gives them
    if resp.status_code != 200:
        check_refusal(stack, resp, text, sent)
        return None
    batch = resp.json[0]["batch"] if isinstance(resp.json, list) else resp.json["batch"]

    def settled():
        drainer.drain_once(wait_seconds=0)
        [(done, parked)] = query(
            stack.database_url,
            f"""SELECT (SELECT count(*) FROM {table} WHERE batch = %(batch)s),
                       (SELECT count(*) FROM parked_events WHERE batch = %(batch)s)""",
            {"batch": batch},
        )
        return (done, parked) if done + parked >= len(sent) else None

    assert wait_for(settled, 30, f"the events of batch {batch}") == (len(sent), 0)  # none parked
    in_order = f"SELECT {columns} FROM {table} WHERE batch = %s ORDER BY sequence"
    rows = query(stack.database_url, in_order, (batch,))
    return sent, rows


def check_refusal(stack, resp, text: str, events: list):
    """A refusal must be a 400 (or 413 for size) naming a value storage or the contract refuses."""
    assert resp.status_code in (400, 413), resp.get_data(as_text=True)
    error = resp.json[0]["value"] if isinstance(resp.json, list) else resp.json["error"]
    if resp.status_code == 413:
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        return
    if error["code"] == "MALFORMED_JSON":  # a number beyond a double, as written
        assert any(math.isinf(float(n)) for n in re.findall(r"-?1e[49]\d\d", text)), error
        return
    assert error["code"] == "INVALID_EVENT", error
    found = re.match(r"\[(\d+)\]\.(.+?): ", error["message"])
    assert found, error
    value = events[int(found.group(1))]
    steps = re.findall(r"[^.\[\]]+|\[\d+\]", found.group(2))
    for step in steps:
        value = value[int(step[1:-1])] if step.startswith("[") else value[step]
    field = next(step for step in reversed(steps) if not step.startswith("["))
    assert unstorable(stack, field, value), f"refused a storable value: {error['message']} {value!r}"


def unstorable(stack, field: str, value) -> bool:
    """Asked of Postgres (and, for times and numbers' types, of the documented contract)."""
    url = stack.database_url
    if field == "time":
        try:
            moment = datetime.fromisoformat(value)
            (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            return True  # outside years 1..9999 in UTC: the stored UTC text cannot say it
        return False
    if field in ("timestamp", "weight"):  # an integer, of the column's type; timestamps not negative
        column = "bigint" if field == "timestamp" else "integer"
        if type(value) is not int or (field == "timestamp" and value < 0):
            return True
        return refuses(url, f"SELECT %s::{column}", str(value))
    if isinstance(value, str):
        return refuses(url, "SELECT convert_from(%s, 'UTF8')", value.encode("utf-8", "surrogatepass"))
    return depth(value) > MAX_JSON_DEPTH or refuses(url, "SELECT %s::jsonb", json.dumps(value))


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def same_json(stored_text: str | None, sent) -> bool:
    """Equal as JSON: numbers by their decimal value (jsonb keeps 1e300 as 1000...0), keys unordered."""
    if stored_text is None:
        return sent is None
    return _canonical(json.loads(stored_text, parse_float=Decimal)) == _canonical(sent)


def _canonical(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("number", Decimal(repr(value)))
    if isinstance(value, (int, Decimal)):
        return ("number", Decimal(value))
    if isinstance(value, list):
        return ("list", tuple(map(_canonical, value)))
    return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))


EVENT = {"customer": "C", "product": "P", "type": "T", "timestamp": 1700000000000, "context": ["x"]}


# The cases the issue found, always among the examples.
@PROPERTY
@given(events=barchart_requests)
@example(events=[{**EVENT, "customer": "A\u0000B"}, EVENT])
@example(events=[{**EVENT, "timestamp": 100000000000000000000}])
@example(events=[{**EVENT, "context": ["ok", "\ud800"]}])
def test_barchart_events_ingest_accepts_are_stored_unchanged(stack, pipeline, events):
    columns = "customer, product, type, timestamp, context::text"
    if (accepted := stored(stack, pipeline, "/events", events, "events", columns)) is None:
        return
    sent, rows = accepted
    expected = [(e["customer"], e["product"], e["type"], e["timestamp"]) for e in sent]
    assert [row[:4] for row in rows] == expected
    assert all(same_json(row[4], e["context"]) for row, e in zip(rows, sent, strict=True))


TOP_LEVEL = [
    name for name in MoesifEventSchema._declared_fields if name not in ("request", "response", "metadata")
]


def unique_transaction_ids(events: list) -> list:
    """Calls sharing a transaction_id are stored once by design: keep generated ids apart."""
    for event in events:
        if event.get("transaction_id"):
            event["transaction_id"] += f"-{uuid.uuid4()}"
    return events


CALL = {
    "request": {"time": "2024-05-01T10:00:00+02:00", "uri": "/items", "verb": "GET", "ip_address": ""},
    "response": {"time": "2024-05-01T08:00:01Z", "status": 200},
}


@PROPERTY
@given(events=moesif_requests.map(unique_transaction_ids))
@example(events=[CALL, {**CALL, "weight": 2**31}])
@example(events=[{**CALL, "user_id": "u\u0000"}])
@example(events=[{**CALL, "request": {**CALL["request"], "body": {"rows": [{"k": "\u0000"}]}}}])
@example(events=[{**CALL, "request": {**CALL["request"], "time": "0001-01-01T00:00:00+14:00"}}])
def test_moesif_calls_ingest_accepts_are_stored_unchanged(stack, pipeline, events):
    columns = f"""request_time AT TIME ZONE 'UTC', response_time AT TIME ZONE 'UTC',
                  uri, verb, status, ip_address, {", ".join(TOP_LEVEL)},
                  metadata::text, request::text, response::text"""
    if (accepted := stored(stack, pipeline, "/v1/events/batch", events, "api_calls", columns)) is None:
        return
    sent, rows = accepted
    for row, event in zip(rows, sent, strict=True):
        request, response = event["request"], event["response"]
        columns = (request["uri"], request["verb"], response["status"], request["ip_address"])
        assert row[:6] == (instant(request["time"]), instant(response["time"]), *columns)
        assert row[6:-3] == tuple(event.get(name) for name in TOP_LEVEL)
        metadata, stored_request, stored_response = row[-3:]
        assert same_json(metadata, event.get("metadata"))
        assert same_json(stored_request, known(RequestSchema, request, row[0]))
        assert same_json(stored_response, known(ResponseSchema, response, row[1]))


def instant(text: str) -> datetime:
    """The moment an ISO 8601 time names, in UTC without a zone (as `AT TIME ZONE 'UTC'` gives it)."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None)


def known(schema, sent: dict, moment: datetime) -> dict:
    """What is stored of a request or response object: its contract's fields (null when absent),
    its time as UTC ISO 8601 text."""
    utc_text = moment.isoformat(timespec="microseconds") + "Z"
    return {**{name: sent.get(name) for name in schema._declared_fields}, "time": utc_text}
