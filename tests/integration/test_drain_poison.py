"""Messages that are not envelopes this version reads reach the DLQ without blocking the queue;
`sluice dlq` lists and replays them. (Events Postgres refuses are parked instead: test_drain_parking.)"""

import uuid

import pytest

from services import cli
from shared import envelope
from tests.factories import BARCHART_EVENT
from tests.factories import envelope_bodies as bodies
from tests.helpers import depth, query, redriven_drainer, send, wait_for


@pytest.fixture
def queues(stack, names, provisioned):
    with redriven_drainer(stack, names, provisioned, max_receives=2, visibility_timeout=1) as drainer:
        yield drainer, provisioned["dlq_url"]


def count_events(stack, app_id):
    return query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,))[0][0]


def test_poison_is_parked_in_the_dlq_and_good_messages_are_stored(stack, tenant, queues, sluice):
    drainer, dlq_url = queues
    app_id = tenant[0]
    future = bodies("barchart", app_id, [BARCHART_EVENT])[0].replace('{"v":2,', '{"v":3,', 1)
    pigeon = envelope.pack("carrier-pigeon", app_id, str(uuid.uuid4()), [{}], 0, 262_144)[0]
    send(drainer.sqs, drainer.queue_url, ["not an envelope", future, pigeon])
    send(drainer.sqs, drainer.queue_url, bodies("barchart", app_id, [BARCHART_EVENT] * 4))

    def dead_lettered():
        drainer.drain_once(wait_seconds=1)
        return depth(drainer.sqs, dlq_url)[0] == 3

    wait_for(dead_lettered, 60, "three poison messages in the DLQ")
    assert count_events(stack, app_id) == 4
    assert depth(drainer.sqs, drainer.queue_url) == (0, 0)

    listed = sluice("dlq", "list")["messages"]
    problems = sorted(m["problem"].split(":")[0] for m in listed)
    assert problems == ["unknown envelope version 3", "unknown kind 'carrier-pigeon'", "unreadable body"]
    assert all(m["receive_count"] >= 2 for m in listed)
    assert depth(drainer.sqs, dlq_url)[0] == 3  # listing leaves them in the DLQ


def test_replay_moves_dead_lettered_messages_back_and_the_drain_stores_them(stack, tenant, queues, sluice):
    drainer, dlq_url = queues
    app_id = tenant[0]
    # Parked earlier (say, before the migration a kind needs was applied) and fine now.
    send(
        drainer.sqs,
        dlq_url,
        bodies("barchart", app_id, [BARCHART_EVENT] * 3) + bodies("barchart", app_id, [BARCHART_EVENT] * 2),
    )
    first = sluice("dlq", "list")["messages"][0]["message_id"]

    assert sluice("dlq", "replay", "--id", first, "--id", "no-such-id") == {
        "replayed": [first],
        "not_deleted": 0,
        "not_found": ["no-such-id"],
        "stored": [],
        "still_parked": [],
    }
    assert depth(drainer.sqs, dlq_url)[0] == 1
    assert len(sluice("dlq", "replay")["replayed"]) == 1
    assert depth(drainer.sqs, dlq_url)[0] == 0

    wait_for(
        lambda: drainer.drain_once(wait_seconds=1) == 0 and count_events(stack, app_id) == 5,
        30,
        "replayed events stored",
    )
    assert sluice("dlq", "list")["messages"] == []


def test_dlq_commands_say_what_is_wrong_when_the_queues_do_not_exist(stack, monkeypatch, capsys):
    monkeypatch.setenv("SLUICE_DATABASE_URL", stack.database_url)
    monkeypatch.setenv("SLUICE_AWS_ENDPOINT_URL", stack.aws_endpoint_url)
    monkeypatch.setenv("SLUICE_EVENTS_DLQ", "never-provisioned")
    assert cli.main(["dlq", "list"]) == 1
    assert "AWS error" in capsys.readouterr().err
