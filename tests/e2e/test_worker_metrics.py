"""A real `celery worker`: its /metrics adds up every process (renders run in the pool's children),
and its heartbeat row says it is alive for as long as it runs."""

import requests
from celery import Celery

from devtools import devstack
from services import fleet, render_jobs
from tests.factories import insert_events
from tests.helpers import metric, query, wait_for


def heartbeats(database_url: str, pid: int) -> list[tuple[int]]:
    return query(
        database_url, "SELECT drain_threads FROM worker_heartbeats WHERE worker LIKE %s", (f"%:{pid}",)
    )


def test_a_render_in_a_pool_process_shows_in_the_workers_metrics(stack, services, tenant, db):
    port = devstack.free_port()
    worker = services.worker(
        SLUICE_WORKER_METRICS_PORT=str(port), SLUICE_WORKER_METRICS_HOST="127.0.0.1", SLUICE_DRAIN_THREADS="2"
    )

    def scrape() -> str:
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.RequestException:
            return ""

    wait_for(lambda: metric(scrape(), "sluice_drain_threads_running") == 2, 60, "two drain threads")
    insert_events(db, tenant[0])
    with db.connection() as conn:
        job = render_jobs.create(conn, tenant[0], "report", "Event")
    render_jobs.enqueue(Celery(broker=stack.redis_url, set_as_current=False))
    wait_for(
        lambda: (
            query(stack.database_url, "SELECT status FROM render_jobs WHERE id = %s", (job.id,))
            == [("done",)]
        ),
        60,
        "report rendered",
    )

    text = scrape()
    assert metric(text, "sluice_render_jobs_finished_total", kind="report", status="done") == 1
    assert metric(text, "sluice_render_duration_seconds_count", kind="report") == 1
    assert metric(text, "sluice_drain_threads_running") == 2
    assert "sluice_drain_lag_seconds" in text and "sluice_queue_messages" in text

    # Alive while it runs; gone from the count as soon as it stops cleanly.
    assert heartbeats(stack.database_url, worker.proc.pid) == [(2,)]
    with db.connection() as conn:
        assert fleet.live(conn)["workers"] >= 1
    worker.stop()
    assert heartbeats(stack.database_url, worker.proc.pid) == []
