"""A batch that takes longer than the visibility timeout stays invisible until it is stored."""

import threading

import psycopg2
import pytest

from tests.factories import BARCHART_EVENT
from tests.factories import envelope_bodies as bodies
from tests.helpers import depth, query, redriven_drainer, send, wait_for


@pytest.fixture
def drainer(stack, names, provisioned):
    with redriven_drainer(stack, names, provisioned, max_receives=5, visibility_timeout=2) as drainer:
        yield drainer


def test_a_slow_batch_is_not_redelivered_while_it_is_being_stored(stack, tenant, drainer):
    send(drainer.sqs, drainer.queue_url, bodies("barchart", tenant[0], [BARCHART_EVENT] * 3))
    blocker = psycopg2.connect(stack.database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE events IN SHARE MODE")  # the drain's INSERT waits behind this
        result = {}
        thread = threading.Thread(target=lambda: result.update(stored=drainer.drain_once(wait_seconds=1)))
        thread.start()
        wait_for(
            lambda: query(
                stack.database_url,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%INSERT INTO events%%'",
            ),
            30,
            "drain blocked",
        )
        # Well past the 2 s visibility timeout: without the heartbeat the message would come back.
        again = drainer.sqs.receive_message(QueueUrl=drainer.queue_url, WaitTimeSeconds=5).get("Messages", [])
        assert again == []
    finally:
        blocker.rollback()
        blocker.close()
    thread.join(30)
    assert result == {"stored": 1}
    assert depth(drainer.sqs, drainer.queue_url) == (0, 0)
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (tenant[0],)) == [(3,)]
