import json
import os

import pytest

from shared import envelope

BATCH = "6f1c3a52-8d0e-4d7a-9a51-2b1f0c9e4d10"


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
    bodies = envelope.pack("barchart", 7, BATCH, evs, 123, 262144)
    assert len(bodies) == 1 and bodies[0].startswith("{")
    env = envelope.decode(bodies[0])
    assert env["events"] == evs and env["app_id"] == 7 and env["first_sequence"] == 0
    assert env["v"] == envelope.VERSION and env["received_ms"] == 123


def test_large_request_is_compressed_and_split_under_the_limit_in_order():
    evs = events(5000)
    raw_size = len(json.dumps(evs))
    bodies = envelope.pack("barchart", 7, BATCH, evs, 0, 65536)
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
        envelope.pack("barchart", 1, BATCH, big, 0, 1024)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1,2]",
        "gz:!!!",
        '{"v": 99, "kind": "barchart"}',
        '{"v": 1, "kind": "barchart", "app_id": "7"}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_poison_bodies_are_refused(body):
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(body)


def test_text_sqs_refuses_travels_compressed_even_when_small():
    evs = [{"customer": "A", "product": "B", "type": "C", "timestamp": 1, "context": ["\uffff"]}]
    [body] = envelope.pack("barchart", 1, BATCH, evs, 0, 262144)
    assert body.startswith(envelope.GZIP_PREFIX) and envelope.decode(body)["events"] == evs


def body(**fields) -> str:
    good = {"v": 1, "kind": "barchart", "app_id": 7, "batch": BATCH, "first_sequence": 0, "received_ms": 1}
    return json.dumps({**good, "events": [{}, {}], **fields})


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"kind": "carrier-pigeon"}, "unknown kind 'carrier-pigeon'"),
        ({"app_id": 2**63}, "app_id"),
        ({"app_id": True}, "app_id"),
        ({"batch": "b-1"}, "not a UUID"),
        ({"first_sequence": -1}, "first_sequence"),
        ({"first_sequence": 2**31 - 1}, "last sequence"),  # its second event would be 2**31
        ({"received_ms": 2**63}, "received_ms"),
    ],
)
def test_an_envelope_the_drain_could_not_even_file_away_is_refused(fields, problem):
    assert envelope.decode(body())["events"] == [{}, {}]
    with pytest.raises(envelope.EnvelopeError, match=problem):
        envelope.decode(body(**fields))
