import base64
import gzip
import json
import os
import uuid

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
    [group] = envelope.decode(bodies[0])
    assert group["events"] == evs and group["app_id"] == 7 and group["first_sequence"] == 0
    assert json.loads(bodies[0])["v"] == envelope.VERSION == 2 and group["received_ms"] == 123


def test_large_request_is_compressed_and_split_under_the_limit_in_order():
    evs = events(5000)
    raw_size = len(json.dumps(evs))
    bodies = envelope.pack("barchart", 7, BATCH, evs, 0, 65536)
    assert all(len(b.encode()) <= 65536 for b in bodies)
    assert all(b.startswith(envelope.GZIP_PREFIX) for b in bodies)
    # Compression lets far fewer messages carry the request than its raw size would need.
    assert len(bodies) < raw_size / 65536 / 2
    rebuilt = []
    for body in bodies:
        [group] = envelope.decode(body)
        assert group["first_sequence"] == len(rebuilt)
        rebuilt += group["events"]
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
        '{"v": 2, "groups": []}',
        '{"v": 2, "groups": [7]}',
        '{"v": 2, "kind": "barchart"}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_poison_bodies_are_refused(body):
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(body)


def test_text_sqs_refuses_travels_compressed_even_when_small():
    evs = [{"customer": "A", "product": "B", "type": "C", "timestamp": 1, "context": ["\uffff"]}]
    [body] = envelope.pack("barchart", 1, BATCH, evs, 0, 262144)
    assert body.startswith(envelope.GZIP_PREFIX) and envelope.decode(body)[0]["events"] == evs


def random_text(n: int) -> str:
    """Text gzip cannot shrink by more than base64 then adds back."""
    return base64.b64encode(os.urandom(n)).decode()[:n]


def test_text_that_compresses_badly_holds_back_no_other_request():
    # Another app's event, then events of random text, one holding U+FFFE (which only travels
    # compressed): every event is packed, no message is over the limit, and nothing is refused.
    small = envelope.Group("barchart", 1, BATCH, 0, 1, envelope.encode_events(events(1)))
    noisy = [{"text": random_text(300) + ("\ufffe" if i == 3 else "")} for i in range(1000)]
    groups = [small, envelope.Group("barchart", 2, str(uuid.uuid4()), 0, 1, envelope.encode_events(noisy))]
    for limit in (262_144, 65_536, 40_000):
        bodies = envelope.pack_groups(groups, limit)
        assert all(len(b.encode()) <= limit for b in bodies)
        decoded = [g for b in bodies for g in envelope.decode(b)]
        assert [e for g in decoded if g["app_id"] == 2 for e in g["events"]] == noisy
        assert [e for g in decoded if g["app_id"] == 1 for e in g["events"]] == events(1)


def test_an_event_holding_text_sqs_refuses_fits_alone_only_if_it_compresses_under_the_limit():
    # Within the event limit as it is, but compressed and base64'd over the message limit.
    size = 65_536 - envelope.OVERHEAD_BYTES - 100
    random = envelope.encode_event({"text": "\ufffe" + random_text(size)})
    repetitive = envelope.encode_event({"text": "\ufffe" + "a" * size})
    assert not envelope.fits_alone(random, 65_536)
    assert envelope.fits_alone(repetitive, 65_536)
    assert envelope.fits_alone(random, 262_144)


GOOD = {"kind": "barchart", "app_id": 7, "batch": BATCH, "first_sequence": 0, "received_ms": 1}


def body(version=2, **fields) -> str:
    """A message of either version with one group of two events, with these fields changed."""
    group = {**GOOD, "events": [{}, {}], **fields}
    if version == 1:
        return json.dumps({"v": 1, **group})
    return json.dumps({"v": 2, "groups": [{**GOOD, "events": []}, group]})


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
@pytest.mark.parametrize("version", [1, 2])
def test_an_envelope_the_drain_could_not_even_file_away_is_refused(fields, problem, version):
    assert envelope.decode(body(version))[-1]["events"] == [{}, {}]
    with pytest.raises(envelope.EnvelopeError, match=problem):
        envelope.decode(body(version, **fields))


def test_a_batch_id_is_read_in_the_form_postgres_takes():
    for written in (f"urn:uuid:{BATCH}", "{" + BATCH.upper() + "}", BATCH.replace("-", "")):
        [_, group] = envelope.decode(body(batch=written))
        assert group["batch"] == BATCH


def test_a_version_1_message_is_read_as_one_group():
    v1 = {"v": 1, **GOOD, "first_sequence": 5, "events": [{"a": 1}]}
    assert envelope.decode(json.dumps(v1)) == [{**v1}]
    compressed = envelope.GZIP_PREFIX + base64.b64encode(gzip.compress(json.dumps(v1).encode())).decode()
    assert envelope.decode(compressed)[0]["events"] == [{"a": 1}]


def group(kind, app_id, events, first_sequence=0):
    batch = str(uuid.uuid4())
    return envelope.Group(kind, app_id, batch, first_sequence, 9, envelope.encode_events(events))


def test_groups_of_several_apps_and_kinds_share_a_message_and_keep_their_identity():
    groups = [
        group("barchart", 1, events(3)),
        group("moesif", 2, [{"m": 1}]),
        group("barchart", 3, events(1), first_sequence=4),
    ]
    [body] = envelope.pack_groups(groups, 262_144)
    decoded = envelope.decode(body)
    assert [(g["kind"], g["app_id"], g["batch"], g["first_sequence"]) for g in decoded] == [
        (g.kind, g.app_id, g.batch, g.first_sequence) for g in groups
    ]
    assert [g["events"] for g in decoded] == [events(3), [{"m": 1}], events(1)]


def test_a_group_cut_by_the_limit_continues_in_the_next_message_with_its_sequences():
    groups = [group("barchart", 1, events(2)), group("barchart", 2, events(40, context_size=30))]
    bodies = envelope.pack_groups(groups, 4096)
    assert len(bodies) > 1 and all(len(b.encode()) <= 4096 for b in bodies)
    seen = [
        (g["app_id"], g["first_sequence"] + i, e)
        for body in bodies
        for g in envelope.decode(body)
        for i, e in enumerate(g["events"])
    ]
    assert seen == [(1, i, e) for i, e in enumerate(events(2))] + [
        (2, i, e) for i, e in enumerate(events(40, 30))
    ]
    # The cut group shows up again in the next message, starting where the previous one stopped.
    assert envelope.decode(bodies[1])[0]["app_id"] == 2
