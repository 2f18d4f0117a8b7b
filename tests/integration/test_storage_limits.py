"""shared/storage_limits.py against the migrated test database, so the two cannot drift apart:
every statement the module makes about a column is asked of Postgres itself."""

import json

import pytest

from shared import storage_limits as limits
from tests import helpers
from tests.helpers import query

# Filled by the database itself, never from an event.
DEFAULTED = {"id", "stored_at", "xid"}


def columns(stack, table: str) -> dict[str, str]:
    return dict(
        query(
            stack.database_url,
            """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = %s""",
            (table,),
        )
    )


@pytest.mark.parametrize(
    "table, stated", [("events", limits.EVENTS_COLUMNS), ("api_calls", limits.API_CALLS_COLUMNS)]
)
def test_every_column_an_event_fills_has_the_type_the_module_states(stack, table, stated):
    actual = columns(stack, table)
    assert {**stated, **limits.ENVELOPE_COLUMNS} == {k: v for k, v in actual.items() if k not in DEFAULTED}


def refuses(stack, sql: str, *params) -> bool:
    return helpers.refuses(stack.database_url, sql, *params)


@pytest.mark.parametrize("column_type", sorted(limits.INTEGER_RANGES))
def test_integer_ranges_are_the_databases(stack, column_type):
    low, high = limits.INTEGER_RANGES[column_type]
    cast = f"SELECT %s::{column_type}"  # from text, as COPY reads it
    assert not refuses(stack, cast, str(low)) and not refuses(stack, cast, str(high))
    assert refuses(stack, cast, str(low - 1)) and refuses(stack, cast, str(high + 1))
    assert limits.integer_problem(high, column_type) is None
    assert limits.integer_problem(high + 1, column_type) and limits.integer_problem(low - 1, column_type)


CHARACTERS = [0x0, 0x1, 0x7F, 0xE9, 0xD7FF, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xE000, 0xFFFE, 0xFFFF, 0x10FFFF]


@pytest.mark.parametrize("code", CHARACTERS, ids=[f"U+{c:04X}" for c in CHARACTERS])
def test_text_and_jsonb_refuse_exactly_what_the_module_refuses(stack, code):
    assert query(stack.database_url, "SHOW server_encoding") == [("UTF8",)]
    character = chr(code)
    as_utf8 = character.encode("utf-8", "surrogatepass")  # a surrogate as the bytes it would be
    text_refused = refuses(stack, "SELECT convert_from(%s, 'UTF8')", as_utf8)
    json_refused = refuses(stack, "SELECT %s::jsonb", json.dumps({character: character}))
    assert text_refused == json_refused == (limits.text_problem(character) is not None)
    assert json_refused == (limits.json_problem({character: character}) is not None)


def test_the_time_range_is_inside_what_timestamptz_holds(stack):
    first, last = limits.TIMESTAMPTZ_POSTGRES_RANGE
    cast = "SELECT %s::timestamptz"
    for moment in (*limits.TIME_RANGE, first, last):
        assert not refuses(stack, cast, moment)
    assert refuses(stack, cast, "4714-11-23 23:59:59.999999+00 BC")
    assert refuses(stack, cast, "294277-01-01 00:00:00+00")


def test_the_json_nesting_and_numbers_the_module_allows_are_what_jsonb_takes(stack):
    deepest = "[" * limits.MAX_JSON_DEPTH + "]" * limits.MAX_JSON_DEPTH
    assert not refuses(stack, "SELECT %s::jsonb", deepest)
    assert limits.json_problem(json.loads(deepest)) is None
    assert limits.json_problem(json.loads("[" + deepest + "]")) == "nested deeper than 256 levels"
    widest = "9" * limits.NUMERIC_MAX_INTEGER_DIGITS
    assert not refuses(stack, "SELECT %s::jsonb", widest) and refuses(stack, "SELECT %s::jsonb", widest + "9")
    for number in (5e-324, 1.7976931348623157e308, -0.0, 2**1000):
        assert not refuses(stack, "SELECT %s::jsonb", json.dumps(number))
        assert limits.json_problem(number) is None
    for constant in ("NaN", "Infinity"):
        assert refuses(stack, "SELECT %s::jsonb", constant)
        assert limits.json_problem(float(constant)) == "numbers must be finite"
