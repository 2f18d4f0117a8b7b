"""What storage keeps, as ingest's schemas see it; and the Barchart fast path never lets through
what the schema refuses. (tests/integration/test_storage_limits.py asks Postgres the same.)"""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from shared import storage_limits as limits
from shared.schemas.events import _plainly_valid, event_schema, validate_events


@pytest.mark.parametrize(
    "value, problem",
    [
        ("fine \ufffe\uffff\U0010ffff", None),
        ("a\x00b", "contains U+0000 (NUL), which Postgres cannot store"),
        ("\ud83d", "contains a lone surrogate U+D83D, which is not Unicode text"),
    ],
)
def test_text_problems_name_the_character(value, problem):
    assert limits.text_problem(value) == problem


def test_json_problems_say_where_inside_the_value():
    assert limits.json_problem({"a": [1, 2.5, None, True, {"b": "ok"}]}) is None
    assert limits.json_problem({"a": [0, {"b": "x\x00"}]}) == (
        "at ['a'][1]['b']: contains U+0000 (NUL), which Postgres cannot store"
    )
    assert limits.json_problem({"k\x00": 1}).startswith("at ['k\\x00']: key contains U+0000")
    assert limits.json_problem([float("nan")]) == "at [0]: numbers must be finite"
    long_key = limits.json_problem({"x" * 100: "\ud800"})  # shown short
    assert long_key.startswith("at ['" + "x" * 40 + "'...]: contains a lone")
    too_deep = json.loads("[" * (limits.MAX_JSON_DEPTH + 1) + "]" * (limits.MAX_JSON_DEPTH + 1))
    assert limits.json_problem(too_deep) == f"nested deeper than {limits.MAX_JSON_DEPTH} levels"


def test_integer_problems_state_the_column_range():
    assert limits.integer_problem(2**31 - 1, limits.INTEGER) is None
    assert limits.integer_problem(-(2**31) - 1, limits.INTEGER) == (
        "must be between -2147483648 and 2147483647 (the integer range)"
    )


text_values = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=5),
    st.text(st.sampled_from("a\x00\ud800\udfff\ufffe"), max_size=3),
    st.text(st.sampled_from("ab"), min_size=255, max_size=258),
)
odd_values = st.one_of(
    text_values,
    st.integers(-1, 1),
    st.sampled_from([2**63 - 1, 2**63, 10**20]),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(text_values, st.integers(), st.none()), max_size=3),
)
events = st.fixed_dictionaries(
    {name: odd_values for name in ("customer", "product", "type", "timestamp", "context")},
    optional={"extra": odd_values},
)


@given(events)
def test_the_fast_path_never_lets_through_what_the_schema_refuses(event):
    try:
        loaded = event_schema.load(event)
    except ValidationError:
        assert not _plainly_valid(event)
    else:
        assert loaded == event or not _plainly_valid(event)


def test_validate_events_refuses_what_postgres_cannot_store_beside_plainly_valid_events():
    good = {"customer": "C", "product": "P", "type": "T", "timestamp": 1, "context": ["x"]}
    assert validate_events([good, good]) == [good, good]
    with pytest.raises(ValidationError) as refused:
        validate_events([good, {**good, "timestamp": 2**63}])
    assert list(refused.value.messages) == [1]
