"""The drain under faults, with real gunicorn ingest, real `celery worker` processes, moto and Postgres.

N events posted must become exactly N rows: after SIGKILL mid-batch, with two workers racing, after
SIGTERM, and across a Postgres outage.
"""

import os
import signal
import uuid

import psycopg2
import pytest
import requests

from devtools import devstack
from services import aws, tenancy
from services.migrations import upgrade
from services.settings import CommonSettings
from shared.enums import KeyScope
from tests.factories import BARCHART_EVENT
from tests.helpers import depth, metric, query, set_redrive, wait_for

PER_REQUEST = 25
NO_METRICS = {"SLUICE_WORKER_METRICS_PORT": "0"}


@pytest.fixture
def sqs(stack, names, provisioned):
    client = aws.client(stack.settings(CommonSettings, **names), "sqs")
    # Messages a killed worker held come back in 5 s rather than 30 s.
    set_redrive(
        client, provisioned["queue_url"], provisioned["dlq_url"], max_receives=5, visibility_timeout=5
    )
    return client


def post(ingest, tenant, requests_count: int) -> int:
    app_id, key = tenant
    for _ in range(requests_count):
        resp = requests.post(
            ingest.url + "/events", json=[BARCHART_EVENT] * PER_REQUEST, auth=(str(app_id), key), timeout=10
        )
        assert resp.status_code == 200, resp.text
    return requests_count * PER_REQUEST


def stored(database_url, app_id) -> int:
    return query(database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,))[0][0]


def settle(sqs, provisioned, database_url, app_id, expected: int) -> None:
    """Wait until every row is in and the queue is empty, then check nothing more arrived."""
    wait_for(lambda: stored(database_url, app_id) >= expected, 90, f"{expected} rows")
    wait_for(lambda: depth(sqs, provisioned["queue_url"]) == (0, 0), 60, "queue drained")
    assert stored(database_url, app_id) == expected
    assert depth(sqs, provisioned["dlq_url"]) == (0, 0)


def blocked_inserts(database_url) -> int:
    return query(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%%INSERT INTO events%%'",
    )[0][0]


def test_sigkill_mid_batch_loses_nothing_and_a_new_worker_stores_exactly_n(
    stack, services, tenant, sqs, provisioned
):
    ingest, worker = services.ingest(), services.worker(**NO_METRICS)
    app_id = tenant[0]
    n = post(ingest, tenant, 10)
    wait_for(lambda: stored(stack.database_url, app_id) == n, 60, "first wave stored")

    # Hold the worker inside its transaction: its INSERT waits behind this lock.
    blocker = psycopg2.connect(stack.database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE events IN SHARE MODE")
        n += post(ingest, tenant, 20)
        wait_for(lambda: blocked_inserts(stack.database_url), 30, "worker mid-batch")
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)
    finally:
        blocker.rollback()
        blocker.close()
    assert stored(stack.database_url, app_id) < n

    services.worker("worker2", **NO_METRICS)
    settle(sqs, provisioned, stack.database_url, app_id, n)


def test_two_workers_at_once_store_each_event_once_and_report_it_in_their_metrics(
    stack, services, tenant, sqs, provisioned
):
    ports = [devstack.free_port(), devstack.free_port()]
    workers = [
        services.worker(f"w{i}", SLUICE_WORKER_METRICS_PORT=str(port), SLUICE_WORKER_METRICS_HOST="127.0.0.1")
        for i, port in enumerate(ports)
    ]
    ingest = services.ingest()
    n = post(ingest, tenant, 40)
    settle(sqs, provisioned, stack.database_url, tenant[0], n)

    def scrape(port):
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.RequestException:
            return ""

    texts = [wait_for(lambda p=p: scrape(p), 30, "worker metrics") for p in ports]
    assert sum(metric(t, "sluice_drain_events_stored_total") for t in texts) == n
    assert sum(metric(t, "sluice_drain_messages_stored_total") for t in texts) >= 40
    for text in texts:
        assert metric(text, "sluice_queue_messages", queue="events", state="visible") == 0
        assert 'sluice_queue_messages{queue="dlq",state="visible"} 0.0' in text
        assert "sluice_drain_lag_seconds" in text and "sluice_drain_messages_failed_total" in text
    assert all(w.proc.poll() is None for w in workers)


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(stack, services, tenant, sqs, provisioned):
    ingest, worker = services.ingest(), services.worker(**NO_METRICS)
    app_id = tenant[0]
    n = post(ingest, tenant, 30)
    wait_for(lambda: stored(stack.database_url, app_id) > 0, 60, "drain under way")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    assert "drain threads stopped" in worker.output()
    # Nothing was left half-done: no message sits invisible waiting for its timeout.
    assert depth(sqs, provisioned["queue_url"])[1] == 0

    services.worker("worker2", **NO_METRICS)
    settle(sqs, provisioned, stack.database_url, app_id, n)


def fast_stop(proc):
    """Postgres' fast shutdown (SIGINT): the smart one would wait for the worker to disconnect."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)


def test_postgres_stopped_during_a_drain_loses_nothing_and_the_worker_catches_up(
    stack, services, sqs, provisioned
):
    # A Postgres of this test's own, so stopping it disturbs no other test. Under the stack's
    # root, which the postgres user can reach.
    port, data_dir = devstack.free_port(), stack.root / f"pg-{uuid.uuid4().hex[:8]}"
    pg, url = devstack.start_postgres(data_dir, port, durable=False)
    try:
        upgrade(url)
        with psycopg2.connect(url) as conn:
            app_id = tenancy.create_app(conn, tenancy.create_org(conn, f"org-{uuid.uuid4().hex[:8]}"), "app")
            _, key = tenancy.create_key(conn, app_id, KeyScope.INGEST)
        env = {"SLUICE_DATABASE_URL": url, "SLUICE_WEB_WORKERS": "1"}  # one key cache to warm
        ingest, worker = services.ingest(**env), services.worker(**env, **NO_METRICS)
        n = post(ingest, (app_id, key), 5)
        wait_for(lambda: stored(url, app_id) == n, 60, "first wave stored")

        fast_stop(pg)
        n += post(ingest, (app_id, key), 15)  # ingest does not need Postgres for a known key
        wait_for(lambda: "drain paused" in worker.output(), 60, "the worker noticing the outage")
        assert depth(sqs, provisioned["queue_url"]) != (0, 0)  # the events wait in SQS

        pg, _ = devstack.start_postgres(data_dir, port, durable=False)
        settle(sqs, provisioned, url, app_id, n)
        assert worker.proc.poll() is None
    finally:
        fast_stop(pg)
