"""What one app may hold at once: reports and exports queued or running (429 with Retry-After),
connectors and pipelines (409), each in its document's shape, and never more under concurrency."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.control.app import create_app
from services.settings import ControlSettings
from tests.factories import REPORT_REQUEST, make_tenant
from tests.helpers import query

MEWS = {"ClientToken": "ct", "Client": "limits 1.0"}


@pytest.fixture
def control(stack, names, provisioned):
    # Tasks go to a Redis database no worker reads: nothing renders, so jobs stay open.
    redis_url = stack.redis_url.rsplit("/", 1)[0] + "/8"
    settings = stack.settings(
        ControlSettings,
        **names,
        redis_url=redis_url,
        render_jobs_per_app=3,
        connectors_per_app=2,
        pipelines_per_app=1,
    )
    return create_app(settings).test_client()


def add_export(control, key, entity="Event"):
    return control.post(
        "/api/connector/v1/exports/add", json={**MEWS, "AccessToken": key, "EntityType": entity}
    )


def test_an_app_has_at_most_its_share_of_open_reports_and_exports(control, tenant, db, stack):
    auth = (str(tenant[0]), tenant[1])
    assert [control.post("/reports", json=REPORT_REQUEST, auth=auth).status_code for _ in range(2)] == [
        200,
        200,
    ]
    assert add_export(control, tenant[1]).status_code == 200

    report = control.post("/reports", json=REPORT_REQUEST, auth=auth)
    assert report.status_code == 429 and int(report.headers["Retry-After"]) > 0
    assert report.json[0]["value"]["code"] == "TOO_MANY_JOBS"  # Barchart's shape
    export = add_export(control, tenant[1], "ApiCall")
    assert export.status_code == 429 and int(export.headers["Retry-After"]) > 0
    assert export.json["error"]["code"] == "TOO_MANY_JOBS"  # the shape Mews' endpoints answer in
    other = make_tenant(db)  # another app's share is its own
    assert control.post("/reports", json=REPORT_REQUEST, auth=(str(other[0]), other[1])).status_code == 200

    query(
        stack.database_url,
        "UPDATE render_jobs SET status = 'done' WHERE id = (SELECT id FROM render_jobs WHERE app_id = %s "
        "AND kind = 'report' LIMIT 1) RETURNING id",
        (tenant[0],),
    )
    assert (
        control.post("/reports", json=REPORT_REQUEST, auth=auth).status_code == 200
    )  # a finished job frees a place


def test_concurrent_requests_cannot_slip_past_the_limit(control, tenant, stack):
    auth = (str(tenant[0]), tenant[1])
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(
                lambda _: control.post("/reports", json=REPORT_REQUEST, auth=auth).status_code, range(12)
            )
        )
    assert sorted(codes) == [200] * 3 + [429] * 9
    assert query(stack.database_url, "SELECT count(*) FROM render_jobs WHERE app_id = %s", (tenant[0],)) == [
        (3,)
    ]


def test_an_app_has_at_most_its_connectors_and_pipelines(control, tenant, db):
    auth = (str(tenant[0]), tenant[1])
    noop = {"driver": "noop", "config": {}}
    first, second = (control.post("/connectors", json=noop, auth=auth) for _ in range(2))
    assert (first.status_code, second.status_code) == (201, 201)
    third = control.post("/connectors", json=noop, auth=auth)
    assert third.status_code == 409 and third.json["errorCode"] == "CONFLICT"  # Formance's shape
    assert "2 connectors" in third.json["errorMessage"]

    connector = first.json["data"]["id"]
    pipe = {"module": "events", "connectorID": connector}
    assert control.post("/pipelines", json=pipe, auth=auth).status_code == 201
    again = control.post("/pipelines", json={**pipe, "module": "api_calls"}, auth=auth)
    assert again.status_code == 409 and "1 pipelines" in again.json["errorMessage"]

    other = make_tenant(db)
    assert control.post("/connectors", json=noop, auth=(str(other[0]), other[1])).status_code == 201
