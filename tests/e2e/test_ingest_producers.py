"""The ingest API under gunicorn: the real moesifapi client, and keys that outlive Postgres."""

import uuid
from datetime import UTC, datetime

import pytest
import requests

from devtools import devstack
from services import aws, tenancy
from services.database import Database
from services.migrations import upgrade
from services.settings import CommonSettings
from shared import envelope
from shared.enums import KeyScope
from tests.factories import barchart_event
from tests.helpers import query, wait_for

EVENT = barchart_event(context=["eu"])


def queued(stack, names) -> list[dict]:
    """The groups of every message on the test's events queue (received, not deleted)."""
    sqs = aws.client(stack.settings(CommonSettings, **names), "sqs")
    url = aws.queue_url(sqs, names["events_queue"])
    found = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        if not got:
            return found
        found += [group for m in got for group in envelope.decode(m["Body"])]


@pytest.fixture
def moesif_client():
    from moesifapi.configuration import Configuration
    from moesifapi.moesif_api_client import MoesifAPIClient

    saved = Configuration.BASE_URI, Configuration.application_id
    yield lambda base_uri, key: (setattr(Configuration, "BASE_URI", base_uri), MoesifAPIClient(key).api)[1]
    Configuration.BASE_URI, Configuration.application_id = saved


def test_the_real_moesifapi_client_posts_events_and_batches(stack, names, services, tenant, moesif_client):
    from moesifapi.exceptions.api_exception import APIException
    from moesifapi.models import EventModel, EventRequestModel, EventResponseModel

    ingest = services.ingest()
    app_id, key = tenant
    now = datetime.now(UTC).replace(tzinfo=None)

    def event(i):
        return EventModel(
            request=EventRequestModel(
                time=now,
                uri=f"https://api.acme.test/items/{i}",
                verb="GET",
                ip_address="203.0.113.9",
                headers={"Accept": "*/*"},
            ),
            response=EventResponseModel(time=now, status=200, headers={}, body={"id": i}),
            user_id="u-1",
            direction="Incoming",
            metadata={"i": i},
        )

    api = moesif_client(ingest.url, key)
    api.create_event(event(0))  # raises APIException unless the answer is 2xx
    api.create_events_batch([event(i) for i in range(1, 4)])
    envs = queued(stack, names)
    assert {e["kind"] for e in envs} == {"moesif"} and {e["app_id"] for e in envs} == {app_id}
    calls = sorted((ev for e in envs for ev in e["events"]), key=lambda ev: ev["metadata"]["i"])
    assert [ev["request"]["uri"] for ev in calls] == [f"https://api.acme.test/items/{i}" for i in range(4)]
    assert calls[2]["response"]["body"] == {"id": 2} and calls[0]["company_id"] is None

    with pytest.raises(APIException) as info:
        moesif_client(ingest.url, "sk_wrong").create_event(event(9))
    assert info.value.response_code == 401


def test_known_keys_keep_posting_across_processes_with_postgres_stopped(stack, names, services):
    pg_proc, pg_url = devstack.start_postgres(
        stack.root / f"pg-{uuid.uuid4().hex[:8]}", devstack.free_port(), durable=False
    )
    try:
        upgrade(pg_url)
        db = Database(pg_url, maxconn=2)
        with db.connection() as conn:
            app_id = tenancy.create_app(conn, tenancy.create_org(conn, "org"), "app")
            (_, known), (revoked_id, revoked) = (
                tenancy.create_key(conn, app_id, KeyScope.INGEST),
                tenancy.create_key(conn, app_id, KeyScope.INGEST),
            )
        env = {
            "SLUICE_DATABASE_URL": pg_url,
            "SLUICE_KEY_CACHE_SECONDS": "1",
            "SLUICE_WEB_WORKERS": "2",
            "SLUICE_KEY_SNAPSHOT_PATH": str(stack.root / f"keys-{uuid.uuid4().hex[:8]}.json"),
        }
        ingest = services.ingest(**env)

        def post(key):  # a new connection each time, so both gunicorn processes answer some
            return requests.post(ingest.url + "/events", json=[EVENT], auth=(str(app_id), key), timeout=15)

        with db.connection() as conn:  # created after the processes loaded their snapshots
            _, fresh = tenancy.create_key(conn, app_id, KeyScope.INGEST)
        assert post(fresh).status_code == 200
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (revoked_id,))
        # Revocation takes effect within SLUICE_KEY_CACHE_SECONDS (1 s here) in every process.
        wait_for(lambda: all(post(revoked).status_code == 401 for _ in range(10)), 10, "revocation")
        db.close()

        devstack.stop(pg_proc)
        answers = [post(key) for _ in range(10) for key in (known, fresh)]
        assert [r.status_code for r in answers] == [200] * 20, answers[0].text
        # What Moesif's middlewares read at start-up needs no Postgres either.
        configs = [
            requests.get(ingest.url + path, headers={"X-Moesif-Application-Id": known}, timeout=15)
            for path in ("/v1/config", "/v1/rules") * 4
        ]
        assert [r.status_code for r in configs] == [200] * 8, configs[0].text
        # A key outside the snapshot (revoked, or never seen) is not let in; without Postgres we
        # cannot tell which, so the answer is "retry later", not a 200.
        assert post(revoked).status_code == 503 and post("sk_never-seen").status_code == 503
        # Processes started during the outage begin from the snapshot the others left on disk.
        restarted = services.ingest(**env)
        resp = requests.post(restarted.url + "/events", json=[EVENT], auth=(str(app_id), known), timeout=15)
        assert resp.status_code == 200, resp.text
        answers.append(resp)
        # Their events wait in SQS for the workers, who store them once Postgres returns.
        batches = {e["batch"] for e in queued(stack, names)}
        assert {r.json()[0]["batch"] for r in answers} <= batches
    finally:
        devstack.stop(pg_proc)


def test_moesif_calls_from_the_real_client_land_in_postgres_once(stack, services, tenant, moesif_client):
    """The Moesif path end to end: moesifapi -> gunicorn ingest -> SQS -> celery worker -> api_calls."""
    from moesifapi.models import EventModel, EventRequestModel, EventResponseModel

    ingest, _ = services.ingest(), services.worker()
    app_id, key = tenant
    when = datetime(2024, 5, 1, 12, 0, 0, 250000)  # naive, as the client sends it: taken as UTC
    calls = [
        EventModel(
            request=EventRequestModel(
                time=when,
                uri=f"https://api.acme.test/v/{i}",
                verb="POST",
                ip_address="198.51.100.4",
                body={"n": i},
            ),
            response=EventResponseModel(time=when, status=201 + i),
            user_id=f"user-{i}",
            company_id=None,
            weight=None,
        )
        for i in range(3)
    ]
    moesif_client(ingest.url, key).create_events_batch(calls)

    def stored():
        return query(
            stack.database_url,
            """SELECT uri, verb, status, user_id, company_id, request->'body',
                                                   request_time = '2024-05-01T12:00:00.25Z'
                                            FROM api_calls WHERE app_id = %s ORDER BY sequence""",
            (app_id,),
        )

    rows = wait_for(lambda: len(stored()) == 3 and stored(), 60, "Moesif calls in Postgres")
    assert rows == [
        (f"https://api.acme.test/v/{i}", "POST", 201 + i, f"user-{i}", None, {"n": i}, True) for i in range(3)
    ]
