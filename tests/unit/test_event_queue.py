"""The SQS sender against a fake SQS client: the one edge these tests stand in for."""

import base64
import json
import os
import threading
import uuid

import pytest

from services.ingest.queue import EventQueue, QueueUnavailable
from services.settings import IngestSettings
from shared import envelope
from tests.helpers import wait_for

SETTINGS = IngestSettings(database_url="unused", sqs_send_deadline_seconds=5.0, sqs_senders=1)
SMALL = IngestSettings(database_url="unused", sqs_send_deadline_seconds=5.0, message_max_bytes=1000)


def request(name: str, events: int = 1, pad: int = 0) -> envelope.Group:
    """A request's group; `pad` bytes of incompressible text per event."""
    encoded = [
        json.dumps({"r": name, "pad": base64.b64encode(os.urandom(pad * 3 // 4)).decode()}).encode()
        for _ in range(events)
    ]
    return envelope.Group("barchart", 7, str(uuid.uuid4()), 0, 1, encoded)


def sent(bodies: list[str]) -> list[tuple[str, int]]:
    """(request name, sequence) of every event in these message bodies."""
    return sorted(
        (event["r"], group["first_sequence"] + i)
        for body in bodies
        for group in envelope.decode(body)
        for i, event in enumerate(group["events"])
    )


class FakeSQS:
    """Answers SendMessageBatch like SQS does, failing entries inside a 200 as scripted."""

    def __init__(self, fail_first=0, sender_fault=False, unreachable=False, gate=None):
        self.fail_first, self.sender_fault, self.unreachable, self.gate = (
            fail_first,
            sender_fault,
            unreachable,
            gate,
        )
        self.calls, self.accepted = [], []

    def get_queue_url(self, QueueName):
        return {"QueueUrl": f"http://sqs.test/{QueueName}"}

    def send_message_batch(self, QueueUrl, Entries):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(len(Entries))
        if self.unreachable:
            raise ConnectionError("SQS unreachable")
        ok, failed = [], []
        for entry in Entries:
            if self.sender_fault or self.fail_first > 0:
                self.fail_first -= 1
                failed.append({"Id": entry["Id"], "SenderFault": self.sender_fault, "Code": "InternalError"})
            else:
                ok.append({"Id": entry["Id"], "MessageId": "m"})
                self.accepted.append(entry["MessageBody"])
        return {"Successful": ok, "Failed": failed}


def test_entries_failed_inside_a_200_are_sent_again_until_accepted():
    sqs = FakeSQS(fail_first=3)
    EventQueue(SMALL, client=sqs).send(request("a", events=5, pad=600))  # one event per message
    assert sent(sqs.accepted) == [("a", i) for i in range(5)]  # each exactly once
    assert sqs.calls == [5, 3]


@pytest.mark.parametrize(
    "sqs",
    [FakeSQS(fail_first=100), FakeSQS(sender_fault=True), FakeSQS(unreachable=True)],
    ids=["keeps-failing", "sender-fault", "unreachable"],
)
def test_entries_sqs_will_not_take_raise_queue_unavailable(sqs):
    with pytest.raises(QueueUnavailable):
        EventQueue(SMALL, client=sqs).send(request("a", events=2, pad=600))
    assert len(sqs.calls) <= 4  # bounded retries, not a loop


def test_concurrent_requests_share_messages_and_calls():
    gate = threading.Event()
    sqs = FakeSQS(gate=gate)
    queue = EventQueue(SETTINGS, client=sqs)
    threads = [threading.Thread(target=queue.send, args=(request(f"r{i}"),)) for i in range(25)]
    for t in threads:
        t.start()
    # The first call waits on the gate; the other requests pile up behind it, then share a message.
    wait_for(lambda: queue.waiting() >= 2, 10, "requests waiting behind the first call")
    gate.set()
    for t in threads:
        t.join(10)
    assert sent(sqs.accepted) == sorted((f"r{i}", 0) for i in range(25))
    assert len(sqs.accepted) < 25


def test_a_request_larger_than_a_message_spans_several_in_order():
    sqs = FakeSQS()
    EventQueue(SMALL, client=sqs).send(request("big", events=7, pad=300))
    assert all(len(body.encode()) <= 1000 for body in sqs.accepted)
    assert len(sqs.accepted) > 1 and sent(sqs.accepted) == [("big", i) for i in range(7)]


def test_neither_a_message_nor_a_call_exceeds_its_limit():
    sqs = FakeSQS()
    settings = IngestSettings(database_url="unused", message_max_bytes=300_000, sqs_senders=1)
    EventQueue(settings, client=sqs).send(request("a", events=3, pad=120_000))
    assert sqs.calls == [1, 1]  # two events fill a message, and the third would overflow the call


LINGERING = IngestSettings(
    database_url="unused", sqs_send_deadline_seconds=3.0, sqs_senders=1, sqs_linger_ms=60_000
)  # a linger far past the deadline: waiting would fail


def test_a_lone_request_is_sent_at_once_whatever_the_linger():
    sqs = FakeSQS()
    queue = EventQueue(LINGERING, client=sqs)
    queue.expect()
    queue.send(request("alone"))  # raises QueueUnavailable if it lingered
    queue.done()
    assert sqs.calls == [1]


def test_a_request_waits_for_one_still_being_read_to_share_the_call():
    sqs = FakeSQS()
    queue = EventQueue(LINGERING, client=sqs)
    queue.expect()
    queue.expect()  # two requests in progress: the first to send waits for the other
    first = threading.Thread(target=queue.send, args=(request("first"),))
    first.start()
    queue.send(request("second"))
    first.join(5)
    assert sqs.calls == [1] and sent(sqs.accepted) == [("first", 0), ("second", 0)]  # one message
