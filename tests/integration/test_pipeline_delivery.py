"""Pipeline runners against the real Postgres, real HTTP receivers and moto S3 and STS.

Runners are driven tick by tick here, or run side by side in threads as in a worker; tests/e2e runs
them inside real celery workers. The receivers listen on 127.0.0.1, which connectors may reach only
because these tests allow loopback (SLUICE_CONNECTOR_ALLOWED_NETWORKS), as `make run` does.
"""

import json
import re
import socket
import threading
import uuid
from concurrent.futures import wait

import psycopg2
import pytest
from prometheus_client import REGISTRY

from services import aws, tenancy
from services.control import pipeline_rows
from services.control.app import create_app
from services.event_writer import write_envelopes
from services.settings import ControlSettings, WorkerSettings
from services.worker import delivery
from services.worker.drivers.http import NO_ANSWER
from services.worker.runner import Runner
from tests.helpers import query, wait_for
from tests.receiver import AwsRecorder, Receiver

LOOPBACK = {"connector_allowed_networks": "127.0.0.0/8"}


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


class Control:
    """The control API acting for one app, as a tenant would use it."""

    def __init__(self, stack, tenant, **settings):
        self.client = create_app(stack.settings(ControlSettings, **LOOPBACK, **settings)).test_client()
        self.auth = (str(tenant[0]), tenant[1])

    def pipeline_to(self, driver, config, module="events"):
        resp = self.client.post("/connectors", json={"driver": driver, "config": config}, auth=self.auth)
        assert resp.status_code == 201, resp.json
        resp = self.client.post(
            "/pipelines", json={"module": module, "connectorID": resp.json["data"]["id"]}, auth=self.auth
        )
        assert resp.status_code == 201, resp.json
        return resp.json["data"]["id"]

    def get(self, pipeline_id):
        return self.client.get(f"/pipelines/{pipeline_id}", auth=self.auth).json["data"]

    def act(self, pipeline_id, action):
        assert self.client.post(f"/pipelines/{pipeline_id}/{action}", auth=self.auth).status_code == 202


@pytest.fixture
def control(stack, tenant):
    return Control(stack, tenant)


@pytest.fixture
def make_runner(stack):
    made = []

    def make(**overrides):
        settings = stack.settings(WorkerSettings, **{"pipeline_poll_seconds": 0.05, **LOOPBACK, **overrides})
        made.append(Runner(settings))
        return made[-1]

    yield make
    for runner in made:
        with runner.transaction() as conn:  # as a stopping worker does, so later tests count no stale runner
            delivery.release(conn, runner.owner)
        runner.close()


def tick(runner):
    """One round of the runner, and the deliveries it began, to their end."""
    wait(runner.tick())


def run_until(runner, check, what, timeout=20):
    def step():
        tick(runner)
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
            tick(runner)
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
    tick(runner)
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
    tick(runner)
    assert control.get(pid)["lastError"] is not None
    assert lag() >= 3600  # the destination refuses: the hour-old events wait

    receiver.fail_next = 0
    run_until(runner, lambda: len(receiver.events()) == 3, "delivery once the destination answers")
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "caught up")
    assert lag() < 60


def test_one_runner_owns_a_pipeline_until_its_lease_lapses(db, tenant, control, receiver, make_runner):
    store_events(db, tenant[0], 4)
    control.pipeline_to("http", {"url": receiver.url, "batching": {"maxItems": 2}})
    short = {"pipeline_lease_seconds": 1.0, "pipeline_deadline_seconds": 0.5}
    first, second = make_runner(**short), make_runner(**short)
    run_until(first, lambda: len(receiver.events()) == 4, "first runner delivers")
    store_events(db, tenant[0], 2)
    tick(second)
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
        tick(runner)
    assert len(receiver.events()) == 3
    control.act(pid, "resume")
    run_until(runner, lambda: len(receiver.events()) == 5, "after resume")
    control.act(pid, "reset")
    assert control.get(pid)["state"] == {"label": "INIT", "cursor": ""}
    run_until(runner, lambda: len(receiver.events()) == 10, "after reset")
    run_until(runner, lambda: control.get(pid)["state"]["label"] == "READY", "READY again")


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
    tick(runner)
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


def test_reading_a_batch_of_a_large_backlog_touches_one_batch_of_rows(db, tenant):
    for _ in range(10):
        store_events(db, tenant[0], 2_000)

    with db.connection() as conn:
        # Statistics that lag a backfill's inserts, or costs tuned for another disk, can make a
        # bitmap scan of the whole backlog look cheaper than walking the index; make it look so.
        with conn.cursor() as cur:
            cur.execute("SET LOCAL random_page_cost = 1000")
        batch = delivery.read_batch(conn, "events", tenant[0], delivery.ORIGIN, 100)
        with conn.cursor() as cur:  # what this transaction read, as Postgres counts it
            cur.execute(
                "SELECT idx_tup_fetch + seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'events'"
            )
            [(touched,)] = cur.fetchall()
    assert len(batch.docs) == 100
    assert touched <= 200, f"{touched} rows read for a batch of 100: the backlog is read for every batch"


def test_a_runner_keeps_drivers_only_for_the_pipelines_it_delivers(
    db, tenant, control, receiver, make_runner
):
    # A worker runs for weeks while tenants reset and delete pipelines: what it keeps must not grow.
    store_events(db, tenant[0], 3)
    kept, deleted = (control.pipeline_to("http", {"url": receiver.url}) for _ in range(2))
    runner = make_runner()
    run_until(runner, lambda: len(receiver.events()) == 6, "both pipelines delivering")
    for _ in range(3):
        control.act(kept, "reset")
        run_until(runner, lambda: control.get(kept)["state"]["label"] == "READY", "caught up after reset")
    assert control.client.delete(f"/pipelines/{deleted}", auth=control.auth).status_code == 204
    tick(runner)

    # (Other tests' pipelines may be this runner's too: only this test's two are looked at.)
    assert [pipeline for pipeline, _ in runner._drivers if pipeline in (kept, deleted)] == [kept]


def test_a_batch_in_flight_across_a_reset_does_not_save_its_position(db, tenant, control, receiver):
    store_events(db, tenant[0], 3)
    pid = control.pipeline_to("http", {"url": receiver.url})
    with db.connection() as conn:
        [pipeline] = [p for p in delivery.claim(conn, "me", 30, 1000) if p.id == pid]
        _, position = delivery.take_turn(conn, pipeline, "me", 30)
        batch = delivery.read_batch(conn, "events", tenant[0], position, 10)
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
    tick(first)
    assert held(db, tenant[0]) == {first.owner: 6}  # alone, a runner takes every pipeline

    def round_():
        store_events(db, tenant[0], 2)
        tick(first)
        tick(second)
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
        tick(first)
        tick(second)
        assert owners(db, tenant[0]) == settled

    def both_tick():
        tick(first)
        tick(second)
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
    tick(first)  # no wait for a lease to lapse
    assert held(db, tenant[0]) == {first.owner: 6}
    run_until(first, lambda: delivered_in_order(db, tenant[0], receiver, pipelines), "every event")


def test_when_a_runner_dies_the_other_takes_all_once_its_leases_lapse(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    short = {"pipeline_lease_seconds": 3.0, "pipeline_deadline_seconds": 1.5}
    first, second = make_runner(**short), make_runner(**short)
    pipelines = six_pipelines_spread_over(db, tenant, control, receiver, first, second)
    store_events(db, tenant[0], 4)
    # The second runner never ticks again: its share waits for its leases, then goes to the first.
    run_until(first, lambda: held(db, tenant[0]) == {first.owner: 6}, "takeover of the dead runner's share")
    run_until(first, lambda: delivered_in_order(db, tenant[0], receiver, pipelines), "every event")


# --- where a connector may deliver, checked at every connection ------------------------------------


def stored_pipeline(db, app_id, driver, config) -> str:
    """A pipeline whose connector went straight into the database, as one created before today's rules."""
    with db.connection() as conn:
        connector = pipeline_rows.create_connector(conn, app_id, driver, config)
        return str(pipeline_rows.create_pipeline(conn, app_id, "events", str(connector["id"]))["id"])


def new_app(db) -> int:
    with db.connection() as conn:
        return tenancy.create_app(conn, tenancy.create_org(conn, f"o-{uuid.uuid4().hex[:8]}"), "other")


def test_without_the_setting_the_worker_refuses_loopback_at_connection_time(
    db, tenant, control, receiver, make_runner
):
    """The control API allowed the URL (its setting let loopback through); the worker's does not:
    the check at every connection, on what the host resolves to then, is what holds."""
    store_events(db, tenant[0], 3)
    pid = control.pipeline_to("http", {"url": receiver.url.replace("127.0.0.1", "localhost")})
    runner = make_runner(connector_allowed_networks="")
    run_until(runner, lambda: control.get(pid)["lastError"], "a failed delivery")
    error = control.get(pid)["lastError"]["message"]
    assert error.startswith("refused by policy: localhost") and "127.0.0.1" not in error
    assert receiver.requests == 0 and control.get(pid)["delivered"] == 0


def test_headers_a_tenant_may_not_set_are_dropped_at_send_time(db, tenant, receiver, make_runner):
    store_events(db, tenant[0], 1)
    headers = {"Host": "internal.example", "Transfer-Encoding": "chunked", "content-type": "text/plain"}
    stored_pipeline(db, tenant[0], "http", {"url": receiver.url, "headers": {**headers, "X-Token": "t"}})
    run_until(make_runner(), lambda: receiver.headers, "the delivery")
    [sent] = receiver.headers
    assert sent["Host"] == f"127.0.0.1:{receiver.port}" and sent["Content-Type"] == "application/json"
    assert sent["X-Token"] == "t" and "Transfer-Encoding" not in sent


def test_redirects_are_not_followed(db, tenant, control, receiver, make_runner):
    target = Receiver()
    try:
        receiver.answer = (302, {"Location": target.url}, b"")
        store_events(db, tenant[0], 1)
        pid = control.pipeline_to("http", {"url": receiver.url})
        run_until(make_runner(), lambda: control.get(pid)["lastError"], "a failed delivery")
        assert control.get(pid)["lastError"]["message"] == "HTTP 302: redirects are not followed"
        assert target.requests == 0
    finally:
        target.close()


def test_of_an_error_answer_only_the_first_bytes_are_read_and_kept(
    db, tenant, control, receiver, make_runner
):
    """The answer says it is 1000 times longer than what comes, then nothing more: reading it all
    would wait for ever (or until the deadline); the first 256 bytes are all lastError keeps."""
    receiver.answer, receiver.then_hang = (500, {}, b"x" * 300), True
    store_events(db, tenant[0], 1)
    pid = control.pipeline_to("http", {"url": receiver.url})
    run_until(make_runner(pipeline_deadline_seconds=15), lambda: control.get(pid)["lastError"], "a failure")
    assert control.get(pid)["lastError"]["message"] == f"HTTP 500 {b'x' * 256!r}"


def test_refused_and_hanging_destinations_read_the_same(db, tenant, control, receiver, make_runner):
    """Otherwise a tenant could tell open ports from closed ones through lastError."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    receiver.hang = True
    store_events(db, tenant[0], 1)
    refused = control.pipeline_to("http", {"url": f"http://127.0.0.1:{closed_port}/hook"})
    hanging = control.pipeline_to("http", {"url": receiver.url})
    runner = make_runner(pipeline_deadline_seconds=1)
    run_until(runner, lambda: all(control.get(p)["lastError"] for p in (refused, hanging)), "both failed")
    assert control.get(refused)["lastError"]["message"] == NO_ANSWER
    assert control.get(hanging)["lastError"]["message"] == NO_ANSWER


# --- one slow destination, and everyone else ------------------------------------------------------


def runner_thread(runner, stop):
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    return thread


def live_runners(db, lease_seconds) -> set[str]:
    """The runners fair shares count: seen within a lease."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT owner FROM pipeline_runners WHERE seen_at >= now() - %s * interval '1 second'",
            (lease_seconds,),
        )
        return {r[0] for r in cur.fetchall()}


def test_a_trickling_destination_is_cut_off_at_the_deadline_and_stalls_no_other_pipeline(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    """It sends a status line, then one byte every 0.2 s for ever; no socket timeout ever fires."""
    trickler = Receiver()
    trickler.trickle = 0.2
    stop = threading.Event()
    thread = None
    try:
        store_events(db, tenant[0], 5)
        slow = control.pipeline_to("http", {"url": trickler.url})  # created first: claimed first
        others = new_app(db)
        store_events(db, others, 5)
        healthy = stored_pipeline(db, others, "http", {"url": receiver.url})
        runner = make_runner(pipeline_lease_seconds=4, pipeline_deadline_seconds=1)
        thread = runner_thread(runner, stop)
        wait_for(lambda: len(receiver.events()) == 5, 20, "the other app's events, meanwhile")
        wait_for(lambda: (control.get(slow)["lastError"] or {}).get("failures", 0) >= 2, 30, "two cut-offs")
        assert control.get(slow)["lastError"]["message"] == NO_ANSWER and trickler.requests >= 2
        store_events(db, others, 3)  # still delivering while the trickler keeps failing
        wait_for(lambda: len(receiver.events()) == 8, 20, "the other app's new events")
        assert runner.owner in live_runners(db, 4)  # its heartbeat went on all along
        assert {h["X-Sluice-Pipeline"] for h in receiver.headers} == {healthy}
    finally:
        stop.set()
        trickler.close()  # first: a runner stuck on it would never see the stop
        if thread is not None:
            thread.join()


def test_concurrent_runners_never_send_a_pipeline_twice_and_keep_its_order(
    db, tenant, control, receiver, make_runner, quiet_fleet
):
    """Three runners in threads, as in three workers, and destinations slow enough that one
    pipeline's backlog outlasts a lease: each event arrives once per pipeline, in the order stored."""
    receiver.delay = 0.08
    store_events(db, tenant[0], 150)
    pipelines = [
        control.pipeline_to("http", {"url": receiver.url, "batching": {"maxItems": 2}}) for _ in range(4)
    ]
    runners = [make_runner(pipeline_lease_seconds=4, pipeline_deadline_seconds=2) for _ in range(3)]
    stop = threading.Event()
    threads = [runner_thread(runner, stop) for runner in runners]
    try:
        for _ in range(3):
            store_events(db, tenant[0], 10)
        wait_for(lambda: len(receiver.events()) >= 4 * 180, 120, "every pipeline's backlog")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(receiver.events()) == 4 * 180
    assert delivered_in_order(db, tenant[0], receiver, pipelines)


# --- s3 with the tenant's own authority -------------------------------------------------------------


@pytest.fixture
def moto(stack):
    """Clients of the test stack's moto server, with the service's own credentials."""
    settings = stack.settings(WorkerSettings)

    class Moto:
        s3 = aws.client(settings, "s3")
        iam = aws.client(settings, "iam")

        def bucket(self) -> str:
            name = f"tenant-{uuid.uuid4().hex[:12]}"
            self.s3.create_bucket(Bucket=name)
            return name

        def lines(self, bucket, prefix) -> list[dict]:
            keys = [
                o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            ]
            return [
                json.loads(line)
                for key in sorted(keys)
                for line in self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
            ]

    return Moto()


def test_an_s3_connector_writes_with_the_tenants_access_key_pair(db, tenant, control, moto, make_runner):
    bucket = moto.bucket()
    user = f"tenant-{uuid.uuid4().hex[:8]}"
    moto.iam.create_user(UserName=user)
    key = moto.iam.create_access_key(UserName=user)["AccessKey"]
    store_events(db, tenant[0], 5)
    config = {"bucket": bucket, "prefix": "out/", "batching": {"maxItems": 2}}
    control.pipeline_to(
        "s3", {**config, "accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
    )
    run_until(make_runner(), lambda: len(moto.lines(bucket, "out/")) == 5, "objects in S3")
    assert [e["type"] for e in moto.lines(bucket, "out/")] == [f"T{i}" for i in range(5)]
    used = moto.iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])["AccessKeyLastUsed"]
    assert used["ServiceName"] == "s3"  # the tenant's key signed the writes


def test_an_s3_connector_writes_as_the_tenants_role_assumed_with_the_apps_external_id(
    stack, db, tenant, control, moto, make_runner
):
    bucket = moto.bucket()
    arn = moto.iam.create_role(RoleName=f"writer-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")[
        "Role"
    ]["Arn"]
    store_events(db, tenant[0], 6)
    control.pipeline_to("s3", {"bucket": bucket, "roleArn": arn, "batching": {"maxItems": 2}})
    aws_calls = AwsRecorder(stack.aws_endpoint_url)
    try:
        runner = make_runner(aws_endpoint_url=aws_calls.url)
        run_until(runner, lambda: len(moto.lines(bucket, "")) == 6, "objects in S3")
    finally:
        aws_calls.close()
    # Once for three batches: the assumed credentials are kept.
    [assume] = [c for c in aws_calls.calls if c["action"] == "AssumeRole"]
    assert assume["params"]["RoleArn"] == arn and assume["params"]["ExternalId"] == f"sluice-app-{tenant[0]}"
    assert assume["key"] == "testing"  # the service's own principal asks
    role_key = re.search(r"<AccessKeyId>(.+?)</AccessKeyId>", assume["answer"])[1]
    writes = [c for c in aws_calls.calls if c["action"].startswith(f"PUT /{bucket}/")]
    assert len(writes) == 3 and {c["key"] for c in writes} == {role_key}  # the role's credentials wrote


def test_the_services_credentials_write_only_to_allowed_buckets_under_the_apps_own_root(
    stack, db, tenant, moto, make_runner
):
    shared = moto.bucket()
    allowed = {"connector_s3_service_buckets": shared}
    control = Control(stack, tenant, **allowed)
    other = new_app(db)
    store_events(db, tenant[0], 3)
    control.pipeline_to("s3", {"bucket": shared, "prefix": f"apps/{other}/"})  # aiming at another app
    run_until(make_runner(**allowed), lambda: len(moto.lines(shared, "")) == 3, "objects in S3")
    assert len(moto.lines(shared, f"apps/{tenant[0]}/apps/{other}/")) == 3
    assert moto.lines(shared, f"apps/{other}/") == []


def test_an_s3_connector_stored_before_the_rules_cannot_write_to_the_exports_bucket(
    stack, names, provisioned, db, tenant, moto, make_runner
):
    store_events(db, tenant[0], 2)
    keys = {"accessKeyId": "AKIAEXAMPLEEXAMPLE", "secretAccessKey": "s"}
    pid = stored_pipeline(db, tenant[0], "s3", {"bucket": names["exports_bucket"], "prefix": "", **keys})
    control = Control(stack, tenant, **names)
    run_until(make_runner(**names), lambda: control.get(pid)["lastError"], "a refused delivery")
    assert control.get(pid)["lastError"]["message"].startswith("refused by policy")
    assert moto.lines(names["exports_bucket"], "") == []
