"""An event's whole trip: POST /events on gunicorn, SQS (moto server), a Celery worker, Postgres."""

import requests

from tests.factories import barchart_event
from tests.helpers import query, wait_for

EVENT = barchart_event(context=["eu"])


def test_a_posted_event_lands_in_postgres_exactly_once(stack, services, tenant):
    ingest = services.ingest()
    services.worker()
    app_id, key = tenant
    resp = requests.post(
        ingest.url + "/events", json=[EVENT, {**EVENT, "type": "LOGOUT"}], auth=(str(app_id), key), timeout=10
    )
    assert resp.status_code == 200, resp.text
    batch = resp.json()[0]["batch"]

    def stored():
        return query(
            stack.database_url,
            "SELECT sequence, type FROM events WHERE app_id = %s AND batch = %s ORDER BY sequence",
            (app_id, batch),
        )

    rows = wait_for(lambda: len(stored()) == 2 and stored(), 30, "events in Postgres")
    assert rows == [(0, "LOGIN"), (1, "LOGOUT")]


def test_both_apis_answer_health_readiness_metrics_version_and_openapi(services):
    for service in (services.ingest(), services.control()):
        for path in ("/healthz", "/readyz", "/system/version", "/openapi.json"):
            resp = requests.get(service.url + path, timeout=10)
            assert resp.status_code == 200, (service.name, path, resp.text)
        assert requests.get(service.url + "/system/version", timeout=5).json()["version"]
        metrics = requests.get(service.url + "/metrics", timeout=5)
        assert metrics.status_code == 200 and "sluice_http_requests" in metrics.text
        assert requests.get(service.url + "/openapi.json", timeout=5).json()["openapi"].startswith("3.")
