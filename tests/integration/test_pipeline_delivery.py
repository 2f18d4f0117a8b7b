"""Pipeline runners against the real Postgres, a real HTTP receiver and moto S3.

Runners are driven tick by tick here; tests/e2e runs them inside real celery workers.
"""

import json
import threading
import uuid

import psycopg2
import pytest
from prometheus_client import REGISTRY

from services import aws
from services.control.app import create_app
from services.settings import ControlSettings, WorkerSettings
from services.worker import delivery
from services.worker.event_writer import write_envelopes
from services.worker.runner import Runner
from tests.helpers import query, wait_for
from tests.receiver import Receiver


def envelope(app_id, n, first=0, batch=None):
    return {
        "kind": "barchart",
        "app_id": app_id,
        "batch": batch or str(uuid.uuid4()),
        "first_sequence": first,
        "received_ms": 1700000000000,
        "events": [
            {
                "customer": "C",
                "product": "P",
                "type": f"T{first + i}",
                "timestamp": 1700000000000 + i,
                "context": [],
            }
            for i in range(n)
        ],
    }


def store_events(db, app_id, n) -> str:
    env = envelope(app_id, n)
    with db.connection() as conn:
        write_envelopes(conn, [env])
    return env["batch"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def control(stack, tenant):
    client = create_app(stack.settings(ControlSettings)).test_client()
    auth = (str(tenant[0]), tenant[1])

    class Control:
        def pipeline_to(self, driver, config, module="events"):
            resp = client.post("/connectors", json={"driver": driver, "config": config}, auth=auth)
            assert resp.status_code == 201, resp.json
            resp = client.post(
                "/pipelines", json={"module": module, "connectorID": resp.json["data"]["id"]}, auth=auth
            )
            assert resp.status_code == 201, resp.json
            return resp.json["data"]["id"]

        def get(self, pipeline_id):
            return client.get(f"/pipelines/{pipeline_id}", auth=auth).json["data"]

        def act(self, pipeline_id, action):
            assert client.post(f"/pipelines/{pipeline_id}/{action}", auth=auth).status_code == 202

    return Control()


@pytest.fixture
def make_runner(stack):
    made = []

    def make(**overrides):
        settings = stack.settings(WorkerSettings, **{"pipeline_poll_seconds": 0.05, **overrides})
        made.append(Runner(settings))
        return made[-1]

    yield make
    for runner in made:
        with runner.transaction() as conn:  # as a stopping worker does, so later tests count no stale runner
            delivery.release(conn, runner.owner)
        runner.close()


def run_until(runner, check, what, timeout=20):
    def step():
        runner.tick()
        return check()

    return wait_for(step, timeout, what)


def test_a_new_pipeline_backfills_in_order_goes_ready_and_follows_new_events(
    db, tenant, control, receiver, make_runner
):
    app_id = tenant[0]
    store_events(db, app_id, 30)
    pid = control.pipeline_to("http", {"url": receiver.url, "batching": {"maxItems": 8}})
    runner = make_runner()
    run_until(runner, lambda: len(receiver.events()) == 30, "backfill")
    assert [e["type"] for e in receiver.events()] == [f"T{i}" for i in range(30)]
    assert max(len(b) for b in receiver.batches) == 8
    assert receiver.headers[0]["X-Sluice-Pipeline"] == pid
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "READY")
    state = control.get(pid)
    assert state["state"]["cursor"] and state["delivered"] == 30

    store_events(db, app_id, 3)
    run_until(runner, lambda: len(receiver.events()) == 33, "new events followed")
    assert {
        "id",
        "batch",
        "sequence",
        "customer",
        "product",
        "type",
        "timestamp",
        "context",
        "receivedAt",
    } <= set(receiver.events()[-1])


def test_a_row_whose_transaction_commits_late_is_not_skipped(
    stack, db, tenant, control, receiver, make_runner
):
    """The late transaction draws the lower id; an `id > cursor` reader would pass over it."""
    app_id = tenant[0]
    pid = control.pipeline_to("http", {"url": receiver.url})
    late = psycopg2.connect(stack.database_url)
    try:
        write_envelopes(late, [envelope(app_id, 1, first=0)])  # id drawn, not committed
        store_events(db, app_id, 2)  # higher ids, committed
        runner = make_runner()
        for _ in range(5):
            runner.tick()
        # Nothing past the open transaction is handed out yet, so its row cannot be overtaken.
        assert receiver.events() == []
        late.commit()
    finally:
        late.close()
    run_until(runner, lambda: len(receiver.events()) == 3, "all three events")
    assert [e["type"] for e in receiver.events()] == ["T0", "T0", "T1"]
    assert control.get(pid)["delivered"] == 3


def test_failures_are_retried_with_backoff_and_the_last_error_shows(
    db, tenant, control, receiver, make_runner
):
    store_events(db, tenant[0], 5)
    receiver.fail_next = 2
    pid = control.pipeline_to("http", {"url": receiver.url})
    runner = make_runner()
    runner.tick()
    failed = control.get(pid)
    assert failed["lastError"]["failures"] == 1 and "HTTP 500" in failed["lastError"]["message"]
    assert failed["state"]["label"] == "INIT" and failed["state"]["cursor"] == ""
    run_until(runner, lambda: len(receiver.events()) == 5, "delivery after retries")
    recovered = control.get(pid)
    assert recovered["lastError"]["failures"] == 0 and recovered["delivered"] == 5
    assert [e["type"] for e in receiver.events()] == [f"T{i}" for i in range(5)]


def test_the_lag_gauge_shows_the_oldest_undelivered_event_until_it_is_delivered(
    stack, db, tenant, control, receiver, make_runner
):
    def lag() -> float:
        return REGISTRY.get_sample_value("sluice_pipeline_lag_seconds", {"driver": "http"})

    store_events(db, tenant[0], 3)
    query(
        stack.database_url,
        "UPDATE events SET stored_at = now() - interval '1 hour' WHERE app_id = %s RETURNING id",
        (tenant[0],),
    )
    receiver.fail_next = 1_000
    pid = control.pipeline_to("http", {"url": receiver.url})
    runner = make_runner()
    runner.tick()
    assert control.get(pid)["lastError"] is not None
    assert lag() >= 3600  # the destination refuses: the hour-old events wait

    receiver.fail_next = 0
    run_until(runner, lambda: len(receiver.events()) == 3, "delivery once the destination answers")
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "caught up")
    assert lag() < 60


def test_one_runner_owns_a_pipeline_until_its_lease_lapses(db, tenant, control, receiver, make_runner):
    store_events(db, tenant[0], 4)
    control.pipeline_to("http", {"url": receiver.url, "batching": {"maxItems": 2}})
    first, second = make_runner(pipeline_lease_seconds=1.0), make_runner(pipeline_lease_seconds=1.0)
    run_until(first, lambda: len(receiver.events()) == 4, "first runner delivers")
    store_events(db, tenant[0], 2)
    second.tick()
    assert len(receiver.events()) == 4  # the lease is the first runner's
    # The first runner dies (never ticks again); once its lease lapses the second takes over.
    run_until(second, lambda: len(receiver.events()) == 6, "takeover")
    assert [e["type"] for e in receiver.events()] == ["T0", "T1", "T2", "T3", "T0", "T1"]


def test_pause_holds_delivery_resume_continues_and_reset_delivers_everything_again(
    db, tenant, control, receiver, make_runner
):
    store_events(db, tenant[0], 3)
    pid = control.pipeline_to("http", {"url": receiver.url})
    runner = make_runner()
    run_until(runner, lambda: len(receiver.events()) == 3, "first delivery")
    control.act(pid, "pause")
    store_events(db, tenant[0], 2)
    for _ in range(5):
        runner.tick()
    assert len(receiver.events()) == 3
    control.act(pid, "resume")
    run_until(runner, lambda: len(receiver.events()) == 5, "after resume")
    control.act(pid, "reset")
    assert control.get(pid)["state"] == {"label": "INIT", "cursor": ""}
    run_until(runner, lambda: len(receiver.events()) == 10, "after reset")
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "READY again")


def test_the_s3_driver_writes_json_lines_objects_under_the_prefix(
    stack, names, provisioned, db, tenant, control, make_runner
):
    store_events(db, tenant[0], 7)
    bucket = names["exports_bucket"]
    control.pipeline_to("s3", {"bucket": bucket, "prefix": "out/", "batching": {"maxItems": 3}})
    runner = make_runner(**names)
    s3 = aws.client(stack.settings(WorkerSettings, **names), "s3")

    def lines():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])]
        return [
            json.loads(line)
            for key in sorted(keys)
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        ]

    run_until(runner, lambda: len(lines()) == 7, "objects in S3")
    assert [e["type"] for e in lines()] == [f"T{i}" for i in range(7)]


def test_the_api_calls_module_delivers_moesif_calls(stack, db, tenant, control, receiver, make_runner):
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb,
                                              status, ip_address, user_id, request, response, received_at)
                       VALUES (%s, gen_random_uuid(), 0, now(), now(), 'https://api.x/a', 'GET', 200,
                               '1.2.3.4',
                               'u1', '{"verb": "GET"}', '{"status": 200}', now())""",
            (tenant[0],),
        )
    control.pipeline_to("http", {"url": receiver.url}, module="api_calls")
    store_events(db, tenant[0], 2)  # another module's events stay out of this pipeline
    run_until(make_runner(), lambda: receiver.events(), "the api call")
    [call] = receiver.events()
    assert call["user_id"] == "u1" and call["response"] == {"status": 200}


def test_a_pipeline_delivers_only_its_own_apps_events(db, tenant, control, receiver, make_runner):
    from services import tenancy

    with db.connection() as conn:
        other = tenancy.create_app(conn, tenancy.create_org(conn, f"o-{uuid.uuid4().hex[:8]}"), "other")
    store_events(db, other, 4)
    store_events(db, tenant[0], 1)
    pid = control.pipeline_to("http", {"url": receiver.url})
    runner = make_runner()
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "READY")
    assert len(receiver.events()) == 1


def test_flush_interval_holds_a_short_batch_back_until_its_oldest_event_is_that_old(
    db, tenant, control, receiver, make_runner
):
    pid = control.pipeline_to(
        "http", {"url": receiver.url, "batching": {"maxItems": 100, "flushInterval": "1s"}}
    )
    runner = make_runner()
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "READY")
    store_events(db, tenant[0], 2)
    runner.tick()
    assert receiver.events() == []  # two events are not a full batch, and they are younger than 1 s
    store_events(db, tenant[0], 1)
    run_until(runner, lambda: receiver.batches, "the held batch")
    assert [len(b) for b in receiver.batches] == [3]


def test_noop_and_stdout_connectors_move_the_cursor(db, tenant, control, make_runner, capsys):
    store_events(db, tenant[0], 2)
    noop = control.pipeline_to("noop", {})
    stdout = control.pipeline_to("stdout", {})
    runner = make_runner()
    run_until(runner, lambda: all(control.get(p)["delivered"] == 2 for p in (noop, stdout)), "both delivered")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["type"] for e in lines] == ["T0", "T1"]


def test_a_batch_in_flight_across_a_reset_does_not_save_its_position(db, tenant, control, receiver):
    store_events(db, tenant[0], 3)
    pid = control.pipeline_to("http", {"url": receiver.url})
    with db.connection() as conn:
        [pipeline] = [p for p in delivery.claim(conn, "me", 30, 1000) if p.id == pid]
        batch = delivery.read_batch(conn, "events", tenant[0], pipeline.position, 10)
    control.act(pid, "reset")  # while the batch is on its way
    with db.connection() as conn:
        assert delivery.save_position(conn, pipeline, "me", batch, 30) is None
        delivery.release(conn, "me")
    assert control.get(pid)["state"]["cursor"] == "" and control.get(pid)["delivered"] == 0


# --- sharing the pipelines among runners ------------------------------------------------------------


@pytest.fixture
def quiet_fleet(db, tenant):
    """Only this test's pipelines run and only its runners are alive.

    Earlier tests leave pipelines running in the shared database; they would count in the shares.
    """
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE pipelines
                       SET label = 'STOP', state = jsonb_build_object('label', 'STOP', 'previousState', state)
                       WHERE app_id <> %s AND label IN ('INIT', 'READY')""",
            (tenant[0],),
        )
        cur.execute("DELETE FROM pipeline_runners")


def owners(db, app_id) -> dict[str, str]:
    """pipeline id -> the runner holding its lease."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id::text, lease_owner FROM pipelines WHERE app_id = %s AND lease_owner IS NOT NULL",
            (app_id,),
        )
        return dict(cur.fetchall())


def held(db, app_id) -> dict[str, int]:
    """runner -> how many pipelines it holds."""
    counts = {}
    for owner in owners(db, app_id).values():
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def six_pipelines_spread_over(db, tenant, control, receiver, first, second) -> list[str]:
    """Six pipelines held by `first` alone, then spread over both while events keep arriving."""
    store_events(db, tenant[0], 10)
    pipelines = [
        control.pipeline_to("http", {"url": receiver.url, "batching": {"maxItems": 3}}) for _ in range(6)
    ]
    first.tick()
    assert held(db, tenant[0]) == {first.owner: 6}  # alone, a runner takes every pipeline

    def round_():
        store_events(db, tenant[0], 2)
        first.tick()
        second.tick()
        return held(db, tenant[0]) == {first.owner: 3, second.owner: 3}

    wait_for(round_, 20, "three pipelines each")
    return pipelines


def delivered_in_order(db, app_id, receiver, pipelines) -> bool:
    """Every pipeline got every stored event exactly once, in the order stored."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM events WHERE app_id = %s ORDER BY xid, id", (app_id,))
        stored = [r[0] for r in cur.fetchall()]
    with receiver.lock:
        got = {p: [] for p in pipelines}
        for headers, batch in zip(receiver.headers, receiver.batches, strict=True):
            got[headers["X-Sluice-Pipeline"]] += [e["id"] for e in batch]
    return all(ids == stored for ids in got.values())


def test_two_runners_each_take_half_the_pipelines_and_every_event_arrives_once_in_order(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    first, second = make_runner(), make_runner()
    pipelines = six_pipelines_spread_over(db, tenant, control, receiver, first, second)
    settled = owners(db, tenant[0])
    for _ in range(5):  # a share, once spread, stays put: nobody trades pipelines back and forth
        store_events(db, tenant[0], 1)
        first.tick()
        second.tick()
        assert owners(db, tenant[0]) == settled

    def both_tick():
        first.tick()
        second.tick()
        return delivered_in_order(db, tenant[0], receiver, pipelines)

    wait_for(both_tick, 20, "every event at every pipeline")


def test_a_runner_that_stops_gives_its_share_to_the_other_at_once(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    first, second = make_runner(), make_runner()
    pipelines = six_pipelines_spread_over(db, tenant, control, receiver, first, second)
    stopped = threading.Event()
    stopped.set()
    second.run(stopped)  # what a worker shutting down does: release its leases, leave the fleet
    store_events(db, tenant[0], 4)
    first.tick()  # no wait for a lease to lapse
    assert held(db, tenant[0]) == {first.owner: 6}
    run_until(first, lambda: delivered_in_order(db, tenant[0], receiver, pipelines), "every event")


def test_when_a_runner_dies_the_other_takes_all_once_its_leases_lapse(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    first, second = make_runner(pipeline_lease_seconds=3.0), make_runner(pipeline_lease_seconds=3.0)
    pipelines = six_pipelines_spread_over(db, tenant, control, receiver, first, second)
    store_events(db, tenant[0], 4)
    # The second runner never ticks again: its share waits for its leases, then goes to the first.
    run_until(first, lambda: held(db, tenant[0]) == {first.owner: 6}, "takeover of the dead runner's share")
    run_until(first, lambda: delivered_in_order(db, tenant[0], receiver, pipelines), "every event")
