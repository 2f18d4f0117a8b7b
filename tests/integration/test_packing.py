"""Concurrent requests share SQS messages, through the real ingest app, moto and the real drain."""

import base64
import json
import os
import threading
import uuid

import pytest

from services.ingest.app import create_app
from services.settings import IngestSettings
from tests.factories import MOESIF_CLIENT_CALL, barchart_event, make_tenant
from tests.helpers import SqsProxy, drain_all, query, send, wait_for

MESSAGE_MAX_BYTES = 4096


def noise(size: int) -> str:
    """Text gzip cannot shrink, so message sizes are what the test says."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


def event(size: int = 0) -> dict:
    return barchart_event(context=[noise(size)] if size else ["x"])


@pytest.fixture
def proxy(stack):
    proxy = SqsProxy(stack.aws_endpoint_url)
    yield proxy
    proxy.close()


@pytest.fixture
def ingest(stack, names, provisioned, proxy):
    """The ingest app, sending to SQS through the proxy, with small messages."""
    settings = stack.settings(
        IngestSettings, **names, aws_endpoint_url=proxy.url, message_max_bytes=MESSAGE_MAX_BYTES
    )
    return create_app(settings)


class Posts:
    """Requests sent from threads, each answered in its own slot."""

    def __init__(self, app):
        self.app, self.threads, self.answers = app, [], {}

    def post(self, name: str, path: str, body, **headers) -> None:
        def run():
            self.answers[name] = self.app.test_client().post(path, json=body, **headers)

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def barchart(self, name: str, tenant, events: list) -> None:
        self.post(name, "/events", events, auth=(str(tenant[0]), tenant[1]))

    def answered(self) -> dict:
        for thread in self.threads:
            thread.join(30)
        return self.answers


def behind_a_call_in_flight(proxy, ingest, tenant, send_more) -> dict:
    """Send one request while SQS holds its call, then `send_more(posts)` requests that pile up
    behind it; release SQS once they all wait, so they go out together in the next call."""
    posts = Posts(ingest)
    proxy.hold()
    posts.barchart("first", tenant, [event()])
    wait_for(lambda: proxy.held == 1, what="the first call to reach SQS")
    more = send_more(posts)
    wait_for(lambda: ingest.config["QUEUE"].waiting() == more, what="the other requests to wait")
    proxy.release()
    return posts.answered()


def stored(stack, table: str, app_id: int) -> list[tuple]:
    sql = f"SELECT batch::text, sequence FROM {table} WHERE app_id = %s ORDER BY 1, 2"
    return query(stack.database_url, sql, (app_id,))


def test_requests_of_several_apps_and_kinds_share_one_message(stack, db, tenant, proxy, ingest, drainer):
    other = make_tenant(db)
    moesif_key = {"X-Moesif-Application-Id": other[1]}

    def send_more(posts):
        posts.barchart("barchart", tenant, [event(), event()])
        calls = [{**MOESIF_CLIENT_CALL, "transaction_id": str(uuid.uuid4())} for _ in range(3)]
        posts.post("moesif", "/v1/events/batch", calls, headers=moesif_key)
        return 2

    answers = behind_a_call_in_flight(proxy, ingest, tenant, send_more)
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses == dict.fromkeys(["first", "barchart", "moesif"], 200)
    assert proxy.calls == [1, 1]  # the second call: one message holding both requests
    drain_all(drainer)
    assert stored(stack, "api_calls", other[0]) == [(answers["moesif"].json["batch"], i) for i in range(3)]
    first, shared = (answers[name].json[0]["batch"] for name in ("first", "barchart"))
    assert stored(stack, "events", tenant[0]) == sorted([(first, 0), (shared, 0), (shared, 1)])


def test_a_request_larger_than_a_message_is_stored_from_several(stack, tenant, proxy, ingest, drainer):
    events = [event(1000) for _ in range(10)]  # about three to a message
    resp = ingest.test_client().post("/events", json=events, auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 200
    [messages] = proxy.calls
    assert messages >= 3
    batch = resp.json[0]["batch"]
    drain_all(drainer)
    sql = "SELECT sequence, context FROM events WHERE batch = %s ORDER BY 1"
    rows = query(stack.database_url, sql, (batch,))
    assert rows == [(i, e["context"]) for i, e in enumerate(events)]


def test_a_refused_message_fails_only_the_requests_in_it(stack, db, tenant, proxy, ingest, drainer):
    refused = make_tenant(db)
    proxy.refuse = lambda group: group["app_id"] == refused[0]

    def send_more(posts):
        # Sizes that no two of can share a message except the last two, and the refused one
        # first: it travels alone, in the same call as the message of the other two.
        posts.barchart("refused", refused, [event(3600)])
        wait_for(lambda: ingest.config["QUEUE"].waiting() == 1, what="the refused request to wait")
        posts.barchart("a", tenant, [event(1400)])
        posts.barchart("b", tenant, [event(1400)])
        return 3

    answers = behind_a_call_in_flight(proxy, ingest, tenant, send_more)
    assert proxy.calls == [1, 2]
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses == {"first": 200, "refused": 503, "a": 200, "b": 200}
    assert answers["refused"].headers["Retry-After"]
    batches = sorted(answers[name].json[0]["batch"] for name in ("first", "a", "b"))
    drain_all(drainer)
    assert stored(stack, "events", tenant[0]) == [(b, 0) for b in batches]
    assert stored(stack, "events", refused[0]) == []


def test_a_worker_stores_a_message_an_older_ingest_wrote(stack, tenant, provisioned, drainer):
    batch = str(uuid.uuid4())
    version_1 = {
        "v": 1,
        "kind": "barchart",
        "app_id": tenant[0],
        "batch": batch,
        "first_sequence": 3,
        "received_ms": 1700000000000,
        "events": [event(), event()],
    }
    send(drainer.sqs, provisioned["queue_url"], [json.dumps(version_1)])
    drain_all(drainer)
    assert stored(stack, "events", tenant[0]) == [(batch, 3), (batch, 4)]
