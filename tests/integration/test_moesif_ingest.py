"""The Moesif routes through the real app against real Postgres (keys) and moto server (SQS)."""

import gzip
import json
import secrets

import pytest

from services import tenancy
from services.ingest.app import create_app
from services.settings import IngestSettings
from tests.factories import MOESIF_CLIENT_CALL, barchart_event
from tests.helpers import queued_envelopes

EVENT = MOESIF_CLIENT_CALL
ROUTES = ["/moesifapi/events", "/v1/events"]
BATCH_ROUTES = ["/moesifapi/events/batch", "/v1/events/batch"]


@pytest.fixture
def client(stack, names, provisioned):
    return create_app(stack.settings(IngestSettings, **names)).test_client()


def post(client, path, body, key, gzipped=False):
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Moesif-Application-Id": key}
    if gzipped:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    return client.post(path, data=data, headers=headers)


@pytest.mark.parametrize("path", ROUTES)
def test_one_event_is_queued_in_the_moesif_form(stack, names, client, tenant, path):
    app_id, key = tenant
    resp = post(client, path, EVENT, key, gzipped=True)
    assert resp.status_code == 200, resp.json
    [env] = queued_envelopes(stack, names)
    assert env["kind"] == "moesif" and env["app_id"] == app_id and env["batch"] == resp.json["batch"]
    [stored] = env["events"]
    assert stored["request"]["time"] == "2024-05-01T10:00:00.123456Z"  # normalised to UTC
    assert stored["response"]["body"] == {"items": [1, 2]} and stored["user_id"] == "u-1"
    assert stored["company_id"] is None and stored["metadata"] == {"plan": "pro"}


@pytest.mark.parametrize("path", BATCH_ROUTES)
def test_a_batch_is_queued_in_order(stack, names, client, tenant, path):
    batch = [{**EVENT, "transaction_id": f"t-{i}"} for i in range(5)]
    resp = post(client, path, batch, tenant[1])
    assert resp.status_code == 200 and resp.json["count"] == 5
    [env] = queued_envelopes(stack, names)
    assert [e["transaction_id"] for e in env["events"]] == [f"t-{i}" for i in range(5)]


@pytest.mark.parametrize("key", ["", "sk_not-a-key"])
def test_missing_or_unknown_application_id_gets_401(client, key):
    resp = post(client, "/v1/events/batch", [EVENT], key)
    assert resp.status_code == 401 and resp.json["error"]["code"] == "UNAUTHORIZED"


def test_bad_events_get_400_naming_index_and_field(client, tenant):
    key = tenant[1]
    bad_time = {**EVENT, "request": {**EVENT["request"], "time": "yesterday"}}
    resp = post(client, "/v1/events/batch", [EVENT, bad_time], key)
    assert resp.status_code == 400 and "[1].request.time" in resp.json["error"]["message"]
    no_status = {**EVENT, "response": {k: v for k, v in EVENT["response"].items() if k != "status"}}
    resp = post(client, "/moesifapi/events", no_status, key)
    assert resp.status_code == 400 and "response.status" in resp.json["error"]["message"]
    assert post(client, "/v1/events", [EVENT], key).status_code == 400  # one event is an object
    assert post(client, "/v1/events/batch", EVENT, key).status_code == 400  # a batch is an array
    assert post(client, "/v1/events/batch", [], key).status_code == 400
    resp = client.post("/v1/events", data=b'{"request":', headers={"X-Moesif-Application-Id": key})
    assert resp.status_code == 400 and resp.json["error"]["code"] == "MALFORMED_JSON"


def test_limits_250kb_batch_and_32kb_event_get_413(client, tenant):
    key = tenant[1]
    over_batch = [{**EVENT, "metadata": {"pad": "x" * 20_000}} for _ in range(13)]  # ~265 KB
    resp = post(client, "/v1/events/batch", over_batch, key, gzipped=True)
    assert resp.status_code == 413 and resp.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    big_event = {**EVENT, "response": {**EVENT["response"], "body": "y" * 40_000}}
    resp = post(client, "/v1/events/batch", [EVENT, big_event], key)
    assert resp.status_code == 413 and "[1]" in resp.json["error"]["message"]


def test_an_encoding_we_cannot_inflate_gets_415(client, tenant):
    resp = client.post(
        "/v1/events",
        data=b"\x00\x01",
        headers={"X-Moesif-Application-Id": tenant[1], "Content-Encoding": "br"},
    )
    assert resp.status_code == 415 and resp.json["error"]["code"] == "UNSUPPORTED_ENCODING"


def with_request(**fields) -> dict:
    return {**EVENT, "request": {**EVENT["request"], **fields}}


@pytest.mark.parametrize(
    "event, field",
    [
        ({**EVENT, "weight": 2**31}, "[1].weight"),  # api_calls.weight is an integer column
        ({**EVENT, "user_id": "u\u00001"}, "[1].user_id"),
        ({**EVENT, "metadata": {"deep": [{"x": "nul\u0000"}]}}, "[1].metadata"),
        (with_request(body={"k\u0000": 1}), "[1].request.body"),  # a NUL in a key, inside jsonb
        (with_request(headers={"X": "\ud800"}), "[1].request.headers"),
        (with_request(api_version="1\u0000"), "[1].request.api_version"),
        # UTC is 1 BC: before the first year the stored UTC text (and Python) can express
        (with_request(time="0001-01-01T00:00:00+14:00"), "[1].request.time"),
        (with_request(time="9999-12-31T23:00:00-05:00"), "[1].request.time"),
    ],
)
def test_a_value_postgres_cannot_store_is_refused_naming_index_and_field(client, tenant, event, field):
    resp = post(client, "/v1/events/batch", [EVENT, event], tenant[1])
    assert resp.status_code == 400, resp.get_data(as_text=True)
    message = resp.json["error"]["message"]
    assert resp.json["error"]["code"] == "INVALID_EVENT" and message.startswith(f"{field}: "), message


NASTY = [
    b"null",
    b'"s"',
    b"[null]",
    b"[[]]",
    b'{"events": null}',
    b"[" * 100_000,
    b'{"a":' * 5000,
    b"\xff\xfe",
    b"",
    b"[1e999999]",
    b"NaN",
    b'[{"request": {"time": NaN}}]',
    b'{"request": [], "response": 1}',
]


@pytest.mark.parametrize("body", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("path", ["/events", "/v1/events", "/v1/events/batch"])
def test_bad_input_never_gets_a_500(client, tenant, path, body):
    app_id, key = tenant
    resp = client.post(
        path,
        data=body,
        auth=(str(app_id), key),
        headers={"Content-Type": "application/json", "X-Moesif-Application-Id": key},
    )
    assert resp.status_code == 400, resp.get_data()


@pytest.mark.parametrize("prefix", ["/v1", "/moesifapi/v1"])
def test_the_config_samples_everything_and_there_are_no_rules(client, tenant, prefix):
    """What moesifwsgi/-django/-asgi (moesifapi) and moesif-nodejs read at start-up and each minute."""
    headers = {"X-Moesif-Application-Id": tenant[1]}
    config = client.get(prefix + "/config", headers=headers)
    no_overrides = ("user_sample_rate", "company_sample_rate", "user_rules", "company_rules")
    assert config.status_code == 200 and config.json == {
        "sample_rate": 100,  # percent: every call is sent
        "regex_config": [],
        **{field: {} for field in no_overrides},
    }
    rules = client.get(prefix + "/rules", headers=headers)
    assert rules.status_code == 200 and rules.json == []
    # The middlewares refetch when an events answer carries another tag than the config did.
    etag = config.headers["X-Moesif-Config-ETag"]
    posted = post(client, "/v1/events/batch", [EVENT], tenant[1])
    again = client.get(prefix + "/config", headers=headers)
    assert etag and posted.headers["X-Moesif-Config-ETag"] == again.headers["X-Moesif-Config-ETag"] == etag
    assert posted.headers["X-Moesif-Rules-Tag"] == rules.headers["X-Moesif-Rules-Tag"]


@pytest.mark.parametrize("path", ["/v1/config", "/moesifapi/v1/config", "/v1/rules", "/moesifapi/v1/rules"])
@pytest.mark.parametrize("key", ["", "sk_not-a-key"])
def test_config_and_rules_refuse_a_missing_or_unknown_key(client, path, key):
    resp = client.get(path, headers={"X-Moesif-Application-Id": key})
    assert resp.status_code == 401 and resp.json["error"]["code"] == "UNAUTHORIZED"
    assert "X-Moesif-Config-ETag" not in resp.headers


def test_keys_issued_in_the_shorter_form_before_keep_working(stack, names, client, db, tenant):
    app_id, key = tenant
    assert len(key) >= 50  # moesif-nodejs refuses an application id under 50 characters
    old_key = "sk_" + secrets.token_urlsafe(32)  # how keys were made before: 46 characters
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            # Keys from before scopes existed became admin keys (migration 0010).
            "INSERT INTO api_keys (app_id, prefix, key_hash, scope) VALUES (%s, %s, %s, 'admin')",
            (app_id, old_key[:10], tenancy.hash_key(old_key)),
        )
    assert client.get("/v1/config", headers={"X-Moesif-Application-Id": old_key}).status_code == 200
    assert post(client, "/v1/events/batch", [EVENT], old_key).status_code == 200
    assert client.post("/events", json=[barchart_event()], auth=(str(app_id), old_key)).status_code == 200
    assert {env["app_id"] for env in queued_envelopes(stack, names)} == {app_id}
