"""The SQS sender against a fake SQS client: the one edge these tests stand in for."""

import threading

import pytest

from services.ingest.queue import EventQueue, QueueUnavailable
from services.settings import IngestSettings

SETTINGS = IngestSettings(database_url="unused", sqs_send_deadline_seconds=5.0, sqs_senders=1)


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
    EventQueue(SETTINGS, client=sqs).send([f"body-{i}" for i in range(5)])
    assert sorted(sqs.accepted) == [f"body-{i}" for i in range(5)]  # each exactly once
    assert len(sqs.calls) == 2 and sqs.calls[1] == 3


@pytest.mark.parametrize(
    "sqs",
    [FakeSQS(fail_first=100), FakeSQS(sender_fault=True), FakeSQS(unreachable=True)],
    ids=["keeps-failing", "sender-fault", "unreachable"],
)
def test_entries_sqs_will_not_take_raise_queue_unavailable(sqs):
    with pytest.raises(QueueUnavailable):
        EventQueue(SETTINGS, client=sqs).send(["a", "b"])
    assert len(sqs.calls) <= 4  # bounded retries, not a loop


def test_concurrent_requests_share_send_message_batch_calls():
    gate = threading.Event()
    sqs = FakeSQS(gate=gate)
    queue = EventQueue(SETTINGS, client=sqs)
    threads = [threading.Thread(target=queue.send, args=([f"r{i}"],)) for i in range(25)]
    for t in threads:
        t.start()
    gate.set()  # SQS answers only once all 25 requests wait: they go out 10 to a call
    for t in threads:
        t.join(10)
    assert sorted(sqs.accepted) == sorted(f"r{i}" for i in range(25))
    assert len(sqs.calls) <= 4 and max(sqs.calls) == 10


def test_a_call_never_exceeds_the_request_size_limit():
    sqs = FakeSQS()
    settings = IngestSettings(database_url="unused", message_max_bytes=1000, sqs_senders=1)
    EventQueue(settings, client=sqs).send(["x" * 400] * 5)
    assert sqs.calls == [2, 2, 1]


LINGERING = IngestSettings(
    database_url="unused", sqs_send_deadline_seconds=3.0, sqs_senders=1, sqs_linger_ms=60_000
)  # a linger far past the deadline: waiting would fail


def test_a_lone_request_is_sent_at_once_whatever_the_linger():
    sqs = FakeSQS()
    queue = EventQueue(LINGERING, client=sqs)
    queue.expect()
    queue.send(["alone"])  # raises QueueUnavailable if it lingered
    queue.done()
    assert sqs.calls == [1]


def test_a_request_waits_for_one_still_being_read_to_share_the_call():
    sqs = FakeSQS()
    queue = EventQueue(LINGERING, client=sqs)
    queue.expect()
    queue.expect()  # two requests in progress: the first to send waits for the other
    first = threading.Thread(target=queue.send, args=(["first"],))
    first.start()
    queue.send(["second"])
    first.join(5)
    assert sqs.calls == [2] and sorted(sqs.accepted) == ["first", "second"]
