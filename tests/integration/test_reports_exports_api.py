"""The control API's report (Barchart) and export (Mews) endpoints against the real Postgres,
Redis and moto; rendering is the worker's plain function, called directly."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from services import aws
from services.control.app import create_app
from services.settings import ControlSettings, WorkerSettings
from services.worker import render
from tests.factories import REPORT_EVENTS, insert_events, make_tenant
from tests.helpers import query

MEWS = {"ClientToken": "client-token-1", "Client": "Sample Client 1.0.0"}


@pytest.fixture
def control(stack, names, provisioned):
    # Tasks go to a Redis database no worker reads: here the test renders by calling the worker code.
    redis_url = stack.redis_url.rsplit("/", 1)[0] + "/8"
    app = create_app(stack.settings(ControlSettings, **names, redis_url=redis_url))
    return app.test_client()


@pytest.fixture
def worker(stack, names, provisioned, db):
    settings = stack.settings(WorkerSettings, **names)
    s3 = aws.client(settings, "s3")
    return lambda job_id: render.run(settings, db, s3, job_id)


ACME_WEB = {"customer": "ACME", "product": "WEB"}


def basic(tenant):
    return {"auth": (str(tenant[0]), tenant[1])}


# --- reports ---------------------------------------------------------------------------------


def test_reports_need_the_apps_own_basic_credentials(control, tenant, db):
    other = make_tenant(db)
    for auth in (None, (str(tenant[0]), "sk_wrong"), (str(other[0]), tenant[1]), ("", tenant[1])):
        resp = control.post("/reports", json={}, auth=auth)
        assert resp.status_code == 401, auth
        assert resp.json[0]["value"]["code"] == "UNAUTHORIZED"
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert control.get(f"/reports/JOB-{uuid.uuid4()}/availability").status_code == 401


def test_start_report_answers_the_job_with_its_filter_and_timing(control, tenant):
    before = datetime.now(UTC)
    resp = control.post(
        "/reports",
        json={
            "filter": {"customer": "ACME", "product": "WEB", "start": "1571029200000", "end": 1571115600000}
        },
        **basic(tenant),
    )
    assert resp.status_code == 200, resp.json
    job = resp.json
    assert job["source"] == "JOB-" + job["job"] and uuid.UUID(job["job"])
    assert job["status"] == "RUNNING"
    assert job["filter"] == {
        "customer": "ACME",
        "product": "WEB",
        "start": 1571029200000,
        "end": 1571115600000,
    }
    assert job["timing"]["day"] == before.strftime("%Y-%m-%d")
    assert abs(job["timing"]["start"] - before.timestamp() * 1000) < 60_000
    assert job["progress"] == {"rows": 0}


def test_a_report_names_its_customer_and_product(control, tenant):
    # Barchart's OpenAPI 1.3.0 requires both: without a body, a filter, or either part, a 400 names it.
    for body, field in (
        (None, "filter.customer"),
        ({}, "filter.customer"),
        ({"filter": {"product": "WEB"}}, "filter.customer"),
        ({"filter": {"customer": "ACME"}}, "filter.product"),
        ({"filter": {"customer": "ACME", "product": None}}, "filter.product"),
    ):
        resp = control.post("/reports", json=body, **basic(tenant))
        assert resp.status_code == 400, body
        assert resp.json[0]["value"]["code"] == "INVALID_FILTER"
        assert resp.json[0]["value"]["message"].startswith(field + ":"), resp.json


@pytest.mark.parametrize(
    "body, field",
    [
        ({"filter": {**ACME_WEB, "start": "yesterday"}}, "filter.start"),
        ({"filter": {**ACME_WEB, "end": -5}}, "filter.end"),
        ({"filter": {**ACME_WEB, "start": True}}, "filter.start"),
        ({"filter": {**ACME_WEB, "start": 10, "end": 5}}, "filter.end"),
        ({"filter": {"customer": 7, "product": "WEB"}}, "filter.customer"),
        ({"filter": {**ACME_WEB, "colour": "red"}}, "filter.colour"),
        # Beyond Postgres bigint: a 400, not a job that fails when it is rendered.
        ({"filter": {**ACME_WEB, "start": 2**63}}, "filter.start"),
        ({"filter": {**ACME_WEB, "end": str(10**30)}}, "filter.end"),
        ({"filter": {**ACME_WEB, "start": "²"}}, "filter.start"),
        ({"filter": "ACME"}, "filter"),
        (["not", "an", "object"], "body"),
    ],
)
def test_a_bad_report_request_is_a_400_naming_the_field(control, tenant, body, field):
    resp = control.post("/reports", json=body, **basic(tenant))
    assert resp.status_code == 400
    assert resp.json[0]["value"]["code"] == "INVALID_FILTER"
    assert resp.json[0]["value"]["message"].startswith(field + ":")


def test_malformed_json_is_a_400(control, tenant):
    resp = control.post("/reports", data=b"{nope", content_type="application/json", **basic(tenant))
    assert resp.status_code == 400 and resp.json[0]["value"]["code"] == "MALFORMED_JSON"


def test_a_report_is_downloadable_once_complete_and_again_later(control, worker, tenant, db):
    app_id, _ = tenant
    # Every ACME event sold on the web, so the report holds all four.
    insert_events(db, app_id, [(c, "WEB" if c == "ACME" else p, *rest) for c, p, *rest in REPORT_EVENTS])
    source = control.post("/reports", json={"filter": ACME_WEB}, **basic(tenant)).json["source"]

    early = control.get(f"/reports/{source}", **basic(tenant))
    assert early.status_code == 409 and early.json[0]["value"]["code"] == "REPORT_NOT_READY"

    worker(source[4:])
    job = control.get(f"/reports/{source}/availability", **basic(tenant)).json
    assert job["status"] == "COMPLETE" and job["progress"] == {"rows": 4}
    for _ in range(2):  # a fresh link each call, and each one works
        link = control.get(f"/reports/{source}", **basic(tenant)).json["link"]
        got = requests.get(link, timeout=10)
        assert got.status_code == 200
        rows = list(csv.reader(io.StringIO(got.text)))
        assert rows[0] == ["customer", "product", "type", "timestamp", "context", "batch", "sequence"]
        assert [r[2] for r in rows[1:]] == ["CLICK", "LOGIN", "LOGIN", "LOGOUT"]  # the ACME events by time


def test_another_apps_report_is_as_unknown_as_a_missing_one(control, tenant, db):
    source = control.post("/reports", json={"filter": ACME_WEB}, **basic(tenant)).json["source"]
    other = make_tenant(db)
    missing = f"JOB-{uuid.uuid4()}"
    for path in ("/reports/{}", "/reports/{}/availability"):
        theirs = control.get(path.format(source), **basic(other))
        unknown = control.get(path.format(missing), **basic(other))
        garbage = control.get(path.format("JOB-not-a-uuid"), **basic(other))
        assert theirs.status_code == unknown.status_code == garbage.status_code == 404
        assert theirs.json[0]["value"]["code"] == unknown.json[0]["value"]["code"] == "NOT_FOUND"


# --- exports ---------------------------------------------------------------------------------


def add(control, tenant, entity="Event", **extra):
    return control.post(
        "/api/connector/v1/exports/add",
        json={**MEWS, "AccessToken": tenant[1], "EntityType": entity, **extra},
    )


def get_all(control, tenant, ids):
    return control.post(
        "/api/connector/v1/exports/getAll", json={**MEWS, "AccessToken": tenant[1], "ExportIds": ids}
    )


def test_add_export_is_pending_and_records_the_client(control, tenant, stack):
    resp = add(control, tenant)
    assert resp.status_code == 200, resp.json
    export = resp.json["Export"]
    assert export["Status"] == "Pending" and export["EntityType"] == "Event"
    assert export["Files"] == [] and export["ExpiresUtc"] is None
    assert query(
        stack.database_url, "SELECT client_token, client FROM render_jobs WHERE id = %s", (export["Id"],)
    ) == [("client-token-1", "Sample Client 1.0.0")]


def test_one_open_export_per_entity_type(control, tenant):
    assert add(control, tenant).status_code == 200
    again = add(control, tenant)
    assert again.status_code == 400 and again.json["error"]["code"] == "EXPORT_IN_PROGRESS"
    assert add(control, tenant, "ApiCall").status_code == 200  # another entity type is fine


@pytest.mark.parametrize(
    "change, status, field",
    [
        ({"EntityType": "OrderItem"}, 400, "EntityType"),
        ({"EntityType": None}, 400, "EntityType"),
        ({"ClientToken": None}, 400, "ClientToken"),
        ({"Client": 5}, 400, "Client"),
        ({"AccessToken": None}, 401, "AccessToken"),
        ({"AccessToken": "sk_unknown"}, 401, "AccessToken"),
    ],
)
def test_bad_export_requests(control, tenant, change, status, field):
    body = {**MEWS, "AccessToken": tenant[1], "EntityType": "Event", **change}
    resp = control.post(
        "/api/connector/v1/exports/add", json={k: v for k, v in body.items() if v is not None}
    )
    assert resp.status_code == status
    assert resp.json["error"]["message"].startswith(field + ":")


def test_get_all_takes_at_most_1000_ids(control, tenant):
    assert get_all(control, tenant, [str(uuid.uuid4()) for _ in range(1000)]).json == {"Exports": []}
    too_many = get_all(control, tenant, [str(uuid.uuid4()) for _ in range(1001)])
    assert too_many.status_code == 400 and "ExportIds" in too_many.json["error"]["message"]
    assert get_all(control, tenant, "not-a-list").status_code == 400


def test_get_all_answers_only_the_callers_exports(control, tenant, db):
    mine = add(control, tenant).json["Export"]["Id"]
    other = make_tenant(db)
    theirs = add(control, other).json["Export"]["Id"]
    resp = get_all(control, tenant, [theirs, "not-a-uuid", mine, str(uuid.uuid4())])
    assert [e["Id"] for e in resp.json["Exports"]] == [mine]


def test_a_finished_export_lists_fetchable_files_until_it_expires(control, worker, tenant, db, stack):
    insert_events(db, tenant[0])
    export_id = add(control, tenant).json["Export"]["Id"]
    assert get_all(control, tenant, [export_id]).json["Exports"][0]["Status"] == "Pending"
    worker(export_id)

    export = get_all(control, tenant, [export_id]).json["Exports"][0]
    assert export["Status"] == "Success" and export["Progress"] == {"Rows": 5}
    expires = datetime.strptime(export["ExpiresUtc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
    [f] = export["Files"]
    got = requests.get(f["Url"], timeout=10)
    assert got.status_code == 200 and len(got.content) == f["SizeInBytes"]
    assert len(got.content.splitlines()) == 5

    query(
        stack.database_url,
        "UPDATE render_jobs SET expires_at = now() WHERE id = %s RETURNING id",
        (export_id,),
    )
    expired = get_all(control, tenant, [export_id]).json["Exports"][0]
    assert expired["Status"] == "Expired" and expired["Files"] == []
    # With the old export finished, a new one of the same type may start.
    assert add(control, tenant).status_code == 200
