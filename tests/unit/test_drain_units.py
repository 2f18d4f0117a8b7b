"""The drain's pure parts: COPY text encoding, the lag gauge, describing DLQ messages."""

import time

from services.dlq import describe
from services.event_writer import _text_field
from services.worker.metrics import Lag
from shared import envelope


def test_copy_text_fields_keep_empty_strings_apart_from_null_and_escape_separators():
    assert _text_field(None) == "\\N"
    assert _text_field("") == ""
    assert _text_field("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert _text_field(42) == "42"


def test_lag_is_the_age_of_the_oldest_message_seen_and_zero_once_caught_up():
    lag = Lag()
    assert lag.seconds() == 0
    now_ms = int(time.time() * 1000)
    lag.observe(
        [
            {"Attributes": {"SentTimestamp": str(now_ms - 5000)}},
            {"Attributes": {"SentTimestamp": str(now_ms - 1000)}},
        ]
    )
    assert 4.5 < lag.seconds() < 60
    lag.observe([])
    assert lag.seconds() == 0


def test_describe_names_the_problem_of_a_parked_message():
    body = envelope.pack("barchart", 7, "6f1c3a52-8d0e-4d7a-9a51-2b1f0c9e4d10", [{"x": 1}] * 2, 0, 262_144)[0]
    good = describe({"MessageId": "m1", "Body": body, "Attributes": {"ApproximateReceiveCount": "5"}})
    [group] = good["groups"]
    assert (group["app_id"], group["kind"], good["events"], good["receive_count"]) == (7, "barchart", 2, 5)
    assert "problem" not in good
    assert "unreadable" in describe({"MessageId": "m2", "Body": "{oops"})["problem"]
    odd = envelope.pack("carrier-pigeon", 7, "6f1c3a52-8d0e-4d7a-9a51-2b1f0c9e4d10", [{}], 0, 262_144)[0]
    assert describe({"MessageId": "m3", "Body": odd})["problem"] == "unknown kind 'carrier-pigeon'"


class StubSQS:
    """The SQS edge: answers a delete with one entry failed, as SQS may inside a 200."""

    def __init__(self):
        self.deleted = []

    def get_queue_url(self, QueueName):
        return {"QueueUrl": "q"}

    def get_queue_attributes(self, QueueUrl, AttributeNames):
        return {"Attributes": {"VisibilityTimeout": "30"}}

    def delete_message_batch(self, QueueUrl, Entries):
        self.deleted += Entries
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries[1:]],
            "Failed": [{"Id": Entries[0]["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True}],
        }


def test_a_delete_that_fails_inside_a_200_is_counted_not_raised():
    from prometheus_client import REGISTRY

    from services.worker.drain import Drainer

    def counts():
        return (
            REGISTRY.get_sample_value("sluice_drain_messages_failed_total", {"reason": "delete"}) or 0,
            REGISTRY.get_sample_value("sluice_drain_messages_stored_total") or 0,
        )

    drainer = Drainer(settings=type("S", (), {"events_queue": "q"})(), db=None, sqs=StubSQS())
    failed, stored = counts()
    drainer._delete([{"ReceiptHandle": "a"}, {"ReceiptHandle": "b"}, {"ReceiptHandle": "c"}])
    assert counts() == (failed + 1, stored + 2)


def test_delete_behind_survives_a_failing_delete_and_deletes_what_is_pending_on_exit():
    from services.worker.drain import DeleteBehind

    done = []

    def delete(messages):
        if messages == ["boom"]:
            raise RuntimeError("SQS fell over")
        done.append(messages)

    with DeleteBehind(delete) as behind:
        behind.submit(["boom"])
        behind.submit(["a"])
        behind.submit(["b"])
    assert done == [["a"], ["b"]]
