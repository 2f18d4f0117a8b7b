"""POST /events through the real app against real Postgres (keys) and moto server (SQS)."""

import base64
import gzip
import json
import os

import pytest
from prometheus_client import REGISTRY

from services.ingest.app import create_app
from services.settings import IngestSettings
from shared import envelope
from tests.factories import barchart_event
from tests.helpers import queued_envelopes

EVENT = barchart_event(
    customer="BARCHART", product="PORTFOLIO", type="LOADED", timestamp=1568381886060, context=["a", "b"]
)


@pytest.fixture
def ingest(stack, names, provisioned):
    settings = stack.settings(IngestSettings, **names, max_body_bytes=20_000)
    return create_app(settings).test_client(), settings


def test_accepted_events_are_answered_as_eventfull_and_queued(stack, names, ingest, tenant):
    client, _ = ingest
    app_id, key = tenant
    resp = client.post(
        "/events", json={"events": [EVENT, {**EVENT, "type": "OTHER"}]}, auth=(str(app_id), key)
    )
    assert resp.status_code == 200, resp.json
    body = resp.json
    batch = body[0]["batch"]
    assert body == [
        {**EVENT, "batch": batch, "sequence": 0},
        {**EVENT, "type": "OTHER", "batch": batch, "sequence": 1},
    ]
    [env] = queued_envelopes(stack, names)
    assert env["app_id"] == app_id and env["batch"] == batch
    assert env["events"] == [EVENT, {**EVENT, "type": "OTHER"}]


def test_the_answer_gives_back_each_event_exactly_as_sent(ingest, tenant):
    client, _ = ingest
    app_id, key = tenant
    tricky = {
        **EVENT,
        "customer": 'Zürich "quoted" \\ \u2028 ✓',
        "context": ["", "日本", "\t"],
        "timestamp": 2**63 - 1,
    }
    resp = client.post("/events", json=[tricky, EVENT], auth=(str(app_id), key))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    batch = resp.json[0]["batch"]
    assert resp.json == [{**tricky, "batch": batch, "sequence": 0}, {**EVENT, "batch": batch, "sequence": 1}]


def test_a_bare_array_and_a_gzip_body_are_accepted(ingest, tenant):
    client, _ = ingest
    app_id, key = tenant
    assert client.post("/events", json=[EVENT], auth=(str(app_id), key)).status_code == 200
    resp = client.post(
        "/events",
        data=gzip.compress(json.dumps([EVENT]).encode()),
        auth=(str(app_id), key),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200 and resp.json[0]["customer"] == "BARCHART"


@pytest.mark.parametrize("auth", [None, ("1", "sk_wrong"), ("999999", None)])
def test_missing_or_wrong_credentials_get_401_in_barchart_shape(ingest, tenant, auth):
    client, _ = ingest
    if auth == ("999999", None):  # a real key, claimed for another app id
        auth = ("999999", tenant[1])
    resp = client.post("/events", json=[EVENT], auth=auth)
    assert resp.status_code == 401
    assert resp.json[0]["value"]["code"] == "UNAUTHORIZED" and resp.json[0]["children"] == []


@pytest.mark.parametrize("header", ["Basic !!!", "Basic /w==", "Basic", "Bearer sk_x", "Digest username=1"])
def test_credentials_that_cannot_be_read_are_a_401_not_the_open_ingest_app(
    stack, names, provisioned, tenant, header
):
    client = create_app(stack.settings(IngestSettings, **names, open_ingest_app=tenant[0])).test_client()
    resp = client.post("/events", json=[EVENT], headers={"Authorization": header})
    assert resp.status_code == 401 and resp.json[0]["value"]["code"] == "UNAUTHORIZED"
    assert client.post("/events", json=[EVENT]).status_code == 200  # no credentials at all: the open app


def test_bad_input_gets_400_naming_index_and_field(ingest, tenant):
    client, _ = ingest
    auth = (str(tenant[0]), tenant[1])
    resp = client.post("/events", json=[EVENT, {**EVENT, "timestamp": "soon"}], auth=auth)
    assert resp.status_code == 400 and "[1].timestamp" in resp.json[0]["value"]["message"]
    resp = client.post("/events", data="[{", auth=auth, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json[0]["value"]["code"] == "MALFORMED_JSON"
    assert client.post("/events", json={"nope": 1}, auth=auth).status_code == 400
    assert client.post("/events", json=[], auth=auth).status_code == 400


def test_oversized_bodies_get_413_plain_and_gzip(ingest, tenant):
    client, _settings = ingest
    auth = (str(tenant[0]), tenant[1])
    big = [EVENT] * 400  # ~40 KB against a 20 KB limit
    assert client.post("/events", json=big, auth=auth).status_code == 413
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")  # 50 MB of spaces in ~50 KB
    resp = client.post(
        "/events",
        data=bomb,
        auth=auth,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status_code == 413 and resp.json[0]["value"]["code"] == "PAYLOAD_TOO_LARGE"


def test_an_event_over_the_per_event_limit_gets_413_naming_its_index(stack, names, provisioned, tenant):
    client = create_app(stack.settings(IngestSettings, **names)).test_client()  # default 1 MB body limit
    resp = client.post(
        "/events", json=[EVENT, {**EVENT, "context": ["z" * 33_000]}], auth=(str(tenant[0]), tenant[1])
    )
    assert resp.status_code == 413 and "[1]" in resp.json[0]["value"]["message"]


def test_text_sqs_cannot_carry_is_queued_safely_or_refused(stack, names, ingest, tenant):
    client, _ = ingest
    auth = (str(tenant[0]), tenant[1])
    odd = {**EVENT, "context": ["\uffff", "\u00e9\u4e2d"]}  # U+FFFF is valid JSON but not a valid SQS body
    assert client.post("/events", json=[odd], auth=auth).status_code == 200
    [env] = queued_envelopes(stack, names)
    assert env["events"] == [odd]
    resp = client.post(
        "/events",
        data='[{"customer":"\\ud800","product":"P","type":"T","timestamp":1,"context":[]}]',
        auth=auth,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400  # a lone surrogate cannot be stored anywhere


def test_open_ingestion_takes_anonymous_traffic_for_the_named_app_only(stack, names, provisioned, tenant):
    app_id, _key = tenant
    client = create_app(stack.settings(IngestSettings, **names, open_ingest_app=app_id)).test_client()
    resp = client.post("/events", json=[EVENT])
    assert resp.status_code == 200
    [env] = queued_envelopes(stack, names)
    assert env["app_id"] == app_id and env["batch"] == resp.json[0]["batch"]
    assert client.post("/events", json=[EVENT], auth=(str(app_id), "sk_wrong")).status_code == 401


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"customer": "A\u0000B"}, "[0].customer"),  # Postgres text cannot hold U+0000
        ({"timestamp": 100000000000000000000}, "[0].timestamp"),  # beyond bigint
        ({"timestamp": 2**63}, "[0].timestamp"),
        ({"context": ["fine", "nul\u0000"]}, "[0].context[1]"),  # jsonb cannot hold \u0000 either
        ({"type": "\udfff"}, "[0].type"),  # a lone surrogate is not text at all
    ],
)
def test_a_value_postgres_cannot_store_is_refused_naming_index_and_field(ingest, tenant, bad, field):
    client, _ = ingest
    resp = client.post("/events", json=[{**EVENT, **bad}, EVENT], auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 400, resp.json
    message = resp.json[0]["value"]["message"]
    assert resp.json[0]["value"]["code"] == "INVALID_EVENT" and message.startswith(f"{field}: "), message


def test_the_largest_values_storage_keeps_are_accepted(stack, names, ingest, tenant):
    client, _ = ingest
    edge = {**EVENT, "timestamp": 2**63 - 1, "customer": "\ufffe\uffff", "context": ["\U0001f600"]}
    resp = client.post("/events", json=[edge], auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 200, resp.json
    assert queued_envelopes(stack, names)[0]["events"] == [edge]


def test_an_event_that_travels_compressed_and_does_not_fit_a_message_gets_413(
    stack, names, provisioned, tenant
):
    # U+FFFE only travels compressed, and random text does not compress: this event is within
    # the limits as it is, but compressed and base64'd it is over the message limit.
    settings = stack.settings(IngestSettings, **names, message_max_bytes=65_536, max_event_bytes=65_536)
    client = create_app(settings).test_client()
    text = base64.b64encode(os.urandom(65_536)).decode()[: 65_536 - envelope.OVERHEAD_BYTES - 200]
    event = {**EVENT, "context": ["\ufffe" + text]}
    resp = client.post("/events", json=[EVENT, event], auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 413, resp.json
    assert resp.json[0]["value"]["message"].startswith("[1]: event holds U+FFFE or U+FFFF")
    assert queued_envelopes(stack, names) == []


def test_each_request_is_timed_by_endpoint_in_the_latency_histogram(ingest, tenant):
    client, _ = ingest

    def timed(endpoint: str) -> float:
        labels = {"service": "ingest", "endpoint": endpoint}
        return REGISTRY.get_sample_value("sluice_http_request_duration_seconds_count", labels) or 0

    before = timed("/events"), timed("unmatched")
    assert client.post("/events", json=[EVENT], auth=(str(tenant[0]), tenant[1])).status_code == 200
    assert client.post("/events", json=[EVENT], auth=(str(tenant[0]), "sk_wrong")).status_code == 401
    assert client.get("/no-such-path").status_code == 404
    assert (timed("/events"), timed("unmatched")) == (before[0] + 2, before[1] + 1)
    assert "sluice_http_request_duration_seconds_bucket" in client.get("/metrics").get_data(as_text=True)
