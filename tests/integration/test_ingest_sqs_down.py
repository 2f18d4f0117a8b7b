"""With SQS unreachable, ingest answers 503 with Retry-After, never a 200 it cannot keep."""

import pytest

from devtools import devstack
from services import aws
from services.ingest.app import create_app
from services.settings import IngestSettings
from tests.factories import MOESIF_CLIENT_CALL as MOESIF_EVENT
from tests.factories import barchart_event

EVENT = barchart_event()


@pytest.fixture
def private_moto(stack):
    proc, url = devstack.start_moto(devstack.free_port())
    yield proc, url
    devstack.stop(proc)


def test_sqs_going_away_gets_503_with_retry_after(stack, names, tenant, private_moto):
    proc, moto_url = private_moto
    settings = stack.settings(IngestSettings, **names, aws_endpoint_url=moto_url)
    aws.provision(settings)
    client = create_app(settings).test_client()
    app_id, key = tenant
    assert client.post("/events", json=[EVENT], auth=(str(app_id), key)).status_code == 200

    devstack.stop(proc)
    resp = client.post("/events", json=[EVENT], auth=(str(app_id), key))
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
    assert resp.json[0]["value"]["code"] == "UNAVAILABLE"
    resp = client.post("/v1/events", json=MOESIF_EVENT, headers={"X-Moesif-Application-Id": key})
    assert (
        resp.status_code == 503
        and resp.headers["Retry-After"]
        and resp.json["error"]["code"] == "UNAVAILABLE"
    )
