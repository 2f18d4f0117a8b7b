import json
import os

import pytest

from shared import envelope


def events(n, context_size=3):
    return [
        {
            "customer": "ACME",
            "product": "WEB",
            "type": f"T{i % 7}",
            "timestamp": 1700000000000 + i,
            "context": [f"ctx-{i}-{j}" for j in range(context_size)],
        }
        for i in range(n)
    ]


def test_small_request_is_one_plain_message_that_round_trips():
    evs = events(3)
    bodies = envelope.pack("barchart", 7, "b-1", evs, 123, 262144)
    assert len(bodies) == 1 and bodies[0].startswith("{")
    env = envelope.decode(bodies[0])
    assert env["events"] == evs and env["app_id"] == 7 and env["first_sequence"] == 0
    assert env["v"] == envelope.VERSION and env["received_ms"] == 123


def test_large_request_is_compressed_and_split_under_the_limit_in_order():
    evs = events(5000)
    raw_size = len(json.dumps(evs))
    bodies = envelope.pack("barchart", 7, "b-1", evs, 0, 65536)
    assert all(len(b.encode()) <= 65536 for b in bodies)
    assert all(b.startswith(envelope.GZIP_PREFIX) for b in bodies)
    # Compression lets far fewer messages carry the request than its raw size would need.
    assert len(bodies) < raw_size / 65536 / 2
    decoded = [envelope.decode(b) for b in bodies]
    rebuilt = []
    for env in decoded:
        assert env["first_sequence"] == len(rebuilt)
        rebuilt += env["events"]
    assert rebuilt == evs


def test_an_event_larger_than_a_message_is_refused():
    big = [
        {"customer": "A", "product": "B", "type": "C", "timestamp": 1, "context": [os.urandom(4000).hex()]}
    ]
    with pytest.raises(envelope.EnvelopeError):
        envelope.pack("barchart", 1, "b", big, 0, 1024)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1,2]",
        "gz:!!!",
        '{"v": 99, "kind": "barchart"}',
        '{"v": 1, "kind": "barchart", "app_id": "7"}',
    ],
)
def test_poison_bodies_are_refused(body):
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(body)


def test_text_sqs_refuses_travels_compressed_even_when_small():
    evs = [{"customer": "A", "product": "B", "type": "C", "timestamp": 1, "context": ["\uffff"]}]
    [body] = envelope.pack("barchart", 1, "b", evs, 0, 262144)
    assert body.startswith(envelope.GZIP_PREFIX) and envelope.decode(body)["events"] == evs
