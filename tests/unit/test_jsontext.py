"""shared/jsontext.py: orjson's speed, the json module's results."""

import json

import pytest

from shared import jsontext

SAME_AS_JSON = [
    b'[1, 2.5, "caf\\u00e9", {"a": null, "b": [true, false]}]',
    b"[12345678901234567890123, -98765432109876543210]",  # beyond 64 bits: exact, never a float
    b'["id 12345678901234567890 in text"]',
    b'["\\ud800"]',  # a lone surrogate: parsed (validation refuses it later), not a parse error
    b"[0.10000000000000000001, 1e-7, -0.0]",
    b'{"a": 1, "a": 2}',
]


@pytest.mark.parametrize("text", SAME_AS_JSON)
def test_loads_gives_what_the_json_module_gives(text):
    value = jsontext.loads(text)
    assert value == json.loads(text) and repr(value) == repr(json.loads(text))


def test_loads_leaves_refusals_to_the_callers_json_function():
    def strict(data):
        raise ValueError("refused by the caller's hooks")

    with pytest.raises(ValueError, match="refused by the caller"):
        jsontext.loads(b"[NaN]", strict)


@pytest.mark.parametrize("value", [[2**70, -(2**64)], {"k": "\u00e9\ufffe"}, [1.5, None, "x"]])
def test_dumps_writes_what_json_dumps_writes(value):
    assert json.loads(jsontext.dumps(value)) == value
    assert jsontext.dumps(value).decode() == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_dumps_refuses_a_lone_surrogate_as_the_json_module_path_did():
    with pytest.raises(UnicodeEncodeError):
        jsontext.dumps(["\ud800"])
