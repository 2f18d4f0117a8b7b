"""A retried request stores once: the Idempotency-Key header on every ingest route, and Moesif's
transaction_id. Real ingest apps, moto SQS, the real drain and Postgres."""

import base64
import os
import time
import uuid

import pytest

from devtools import devstack
from services import aws
from services.ingest.app import create_app
from services.settings import CommonSettings, IngestSettings
from shared import envelope
from tests.factories import MOESIF_CLIENT_CALL, barchart_event, make_tenant
from tests.helpers import depth, drain_all, query


def ingest(stack, names, **overrides):
    return create_app(stack.settings(IngestSettings, **names, **overrides)).test_client()


def stored(stack, app_id, table="events") -> list[tuple]:
    return query(
        stack.database_url,
        f"SELECT batch::text, sequence FROM {table} WHERE app_id = %s ORDER BY batch, sequence",
        (app_id,),
    )


def key(value: str) -> dict:
    return {"Idempotency-Key": value}


def test_a_repeated_key_answers_as_the_first_time_and_stores_once(stack, names, provisioned, tenant, drainer):
    client = ingest(stack, names)
    app_id, api_key = tenant
    auth = (str(app_id), api_key)
    events = [barchart_event(type=f"T{i}") for i in range(3)]
    first = client.post("/events", json=events, auth=auth, headers=key("order-17"))
    again = client.post("/events", json=events, auth=auth, headers=key("order-17"))
    other = client.post("/events", json=events, auth=auth, headers=key("order-18"))
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.json == first.json  # the same batch and sequences
    assert other.json[0]["batch"] != first.json[0]["batch"]
    drain_all(drainer)
    assert stored(stack, app_id) == sorted(
        (resp.json[0]["batch"], i) for resp in (first, other) for i in range(3)
    )


@pytest.mark.parametrize("path", ["/v1/events", "/moesifapi/events/batch"])
def test_moesif_routes_honour_the_key_too(stack, names, provisioned, tenant, drainer, path):
    client = ingest(stack, names)
    app_id, api_key = tenant
    call = {**MOESIF_CLIENT_CALL, "transaction_id": None}  # so only the key can make it once
    body = call if path == "/v1/events" else [call, call]
    headers = {"X-Moesif-Application-Id": api_key, **key("retry-me")}
    first = client.post(path, json=body, headers=headers)
    again = client.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and again.json == first.json
    drain_all(drainer)
    batch, count = first.json["batch"], first.json["count"]
    assert stored(stack, app_id, "api_calls") == [(batch, i) for i in range(count)]


def test_the_same_key_from_another_app_is_another_request(stack, names, provisioned, db, drainer):
    client = ingest(stack, names)
    batches = []
    for app_id, api_key in (make_tenant(db), make_tenant(db)):
        resp = client.post("/events", json=[barchart_event()], auth=(str(app_id), api_key), headers=key("k"))
        batches.append(resp.json[0]["batch"])
        drain_all(drainer)
        assert stored(stack, app_id) == [(resp.json[0]["batch"], 0)]
    assert batches[0] != batches[1]


@pytest.mark.parametrize("value", ["", "two words", "caf\u00e9", "x" * 256, "tab\there"])
def test_a_key_that_is_not_1_to_255_visible_ascii_characters_gets_400(
    stack, names, provisioned, tenant, value
):
    client = ingest(stack, names)
    app_id, api_key = tenant
    resp = client.post("/events", json=[barchart_event()], auth=(str(app_id), api_key), headers=key(value))
    assert resp.status_code == 400 and resp.json[0]["value"]["code"] == "INVALID_IDEMPOTENCY_KEY"
    resp = client.post(
        "/v1/events", json=MOESIF_CLIENT_CALL, headers={"X-Moesif-Application-Id": api_key, **key(value)}
    )
    assert resp.status_code == 400 and resp.json["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"


def incompressible(n: int) -> str:
    return base64.b64encode(os.urandom(n))[:n].decode()


def test_a_retry_after_a_503_with_some_messages_queued_stores_each_event_once(
    stack, names, provisioned, tenant, drainer
):
    """SQS takes a request's first call of ten messages and refuses the next, whose last message is
    over the queue's size limit: the producer gets a 503 with ten messages already queued. After
    the cause is gone, its retry with the same key is stored once, not ten events twice."""
    app_id, api_key = tenant
    auth = (str(app_id), api_key)
    # Twelve events of one message each, then one whose message is over the queue's 1024 bytes.
    events = [barchart_event(context=[incompressible(600)]) for _ in range(12)]
    events.append(barchart_event(context=[incompressible(1000)]))
    received_ms = int(time.time() * 1000)
    bodies = envelope.pack("barchart", app_id, str(uuid.uuid4()), events, received_ms, 1300)
    sizes = [len(body.encode()) for body in bodies]
    assert len(sizes) == 13 and max(sizes[:12]) <= 1024 < sizes[12]
    sqs = aws.client(stack.settings(CommonSettings, **names), "sqs")
    sqs.set_queue_attributes(QueueUrl=provisioned["queue_url"], Attributes={"MaximumMessageSize": "1024"})
    client = ingest(stack, names, message_max_bytes=1300, sqs_send_deadline_seconds=3)

    first = client.post("/events", json=events, auth=auth, headers=key("upload-2024-05-01"))
    assert first.status_code == 503 and first.headers["Retry-After"]
    assert depth(sqs, provisioned["queue_url"])[0] == 10  # queued before SQS refused the last

    sqs.set_queue_attributes(QueueUrl=provisioned["queue_url"], Attributes={"MaximumMessageSize": "262144"})
    retry = client.post("/events", json=events, auth=auth, headers=key("upload-2024-05-01"))
    assert retry.status_code == 200
    drain_all(drainer)
    assert stored(stack, app_id) == [(retry.json[0]["batch"], i) for i in range(13)]


def test_another_ingest_process_with_postgres_stopped_answers_with_the_same_batch(
    stack, names, provisioned, tenant, tmp_path
):
    """The batch id comes from the key alone: no shared state, no Postgres, no Redis."""
    app_id, api_key = tenant
    snapshot = str(tmp_path / "keys.json")
    auth, headers, body = (str(app_id), api_key), key("report-42"), [barchart_event()]
    one = ingest(stack, names, key_snapshot_path=snapshot)
    first = one.post("/events", json=body, auth=auth, headers=headers)
    # Another process, started while Postgres does not answer: it knows the key from the snapshot.
    nowhere = f"postgresql://sluice@127.0.0.1:{devstack.free_port()}/sluice"
    other = ingest(stack, names, key_snapshot_path=snapshot, database_url=nowhere)
    again = other.post("/events", json=body, auth=auth, headers=headers)
    assert first.status_code == again.status_code == 200 and again.json == first.json


def test_moesif_calls_with_one_transaction_id_are_stored_once_per_app(stack, names, provisioned, db, drainer):
    client = ingest(stack, names)
    (app_a, key_a), (app_b, key_b) = make_tenant(db), make_tenant(db)

    def post(api_key, *transaction_ids):
        calls = [{**MOESIF_CLIENT_CALL, "transaction_id": t} for t in transaction_ids]
        resp = client.post("/v1/events/batch", json=calls, headers={"X-Moesif-Application-Id": api_key})
        assert resp.status_code == 200

    post(key_a, "t-1", "t-1", None, None, "", "")  # twice in one request; null and "" are no id
    post(key_a, "t-1", "t-2")  # again in a later request
    post(key_b, "t-1")  # another app's t-1 is another call
    drain_all(drainer)

    def ids(app_id):
        rows = query(stack.database_url, "SELECT transaction_id FROM api_calls WHERE app_id = %s", (app_id,))
        return sorted(row[0] or "-" for row in rows)

    assert ids(app_a) == ["-", "-", "-", "-", "t-1", "t-2"]
    assert ids(app_b) == ["t-1"]
