"""The drain loop against real moto SQS and Postgres."""

from services.ingest.app import create_app
from services.settings import IngestSettings
from tests.factories import BARCHART_EVENT as EVENT
from tests.helpers import drain_all, query


def post(stack, names, tenant, events):
    client = create_app(stack.settings(IngestSettings, **names)).test_client()
    resp = client.post("/events", json=events, auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 200
    return resp.json


def test_posted_events_are_stored_with_their_app_batch_and_sequence(stack, names, tenant, drainer):
    answered = post(stack, names, tenant, [EVENT, {**EVENT, "type": "U", "context": []}])
    drain_all(drainer)
    rows = query(
        stack.database_url,
        """SELECT batch::text, sequence, customer, product, type, timestamp, context
                                        FROM events WHERE app_id = %s ORDER BY sequence""",
        (tenant[0],),
    )
    assert rows == [
        (answered[0]["batch"], 0, "C", "P", "T", 1700000000000, ["x"]),
        (answered[0]["batch"], 1, "C", "P", "U", 1700000000000, []),
    ]


def test_a_redelivered_message_stores_its_events_once(stack, names, tenant, drainer):
    post(stack, names, tenant, [EVENT] * 5)
    # Receive without deleting, as a worker that died after commit would, then let it reappear.
    sqs = drainer.sqs
    [msg] = sqs.receive_message(QueueUrl=drainer.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)[
        "Messages"
    ]
    sqs.send_message(QueueUrl=drainer.queue_url, MessageBody=msg["Body"])  # the duplicate
    sqs.change_message_visibility(
        QueueUrl=drainer.queue_url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0
    )
    drain_all(drainer)
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (tenant[0],)) == [(5,)]


def test_a_poison_message_is_left_in_the_queue_and_does_not_block_others(stack, names, tenant, drainer):
    drainer.sqs.send_message(QueueUrl=drainer.queue_url, MessageBody="this is not an envelope")
    post(stack, names, tenant, [EVENT] * 3)
    drain_all(drainer)
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (tenant[0],)) == [(3,)]
    attrs = drainer.sqs.get_queue_attributes(
        QueueUrl=drainer.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
