"""`sluice status` as an operator runs it, its figures scoped per app for the ops page, and progress
of long commands on a terminal."""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import fleet, render_jobs, status
from services.control import pipeline_rows
from tests.factories import insert_events, insert_many_events, insert_parked_event, make_tenant
from tests.helpers import wait_for

SLUICE = str(Path(sys.executable).parent / "sluice")


@pytest.fixture
def env(stack, names, provisioned):
    return stack.env(**{"SLUICE_" + k.upper(): v for k, v in names.items()})


@pytest.fixture
def no_live_worker(db):
    """Workers of earlier tests, dead or stopped, no longer count."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("UPDATE worker_heartbeats SET seen_at = now() - interval '1 hour'")


@pytest.fixture
def nothing_parked(db):
    """Events earlier tests parked on purpose are no concern here."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM parked_events")


def sluice_status(env, *args) -> subprocess.CompletedProcess:
    return run(SLUICE, "status", *args, env=env)


def run(*cmd, env) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_parked_messages_and_no_live_worker_need_attention(env, provisioned, no_live_worker):
    sqs = boto_sqs(env)
    sqs.send_message(QueueUrl=provisioned["dlq_url"], MessageBody="parked")
    sqs.send_message(QueueUrl=provisioned["queue_url"], MessageBody="waiting")

    done = sluice_status(env, "--json")
    assert done.returncode == 1, done.stderr
    found = json.loads(done.stdout)
    assert found["healthy"] is False
    assert found["events"] == {"visible": 1, "in_flight": 0} and found["dlq"]["visible"] == 1
    assert found["drain"] == {"workers": 0, "drain_threads": 0, "drain_lag_seconds": None}
    assert any("dead-letter queue holds 1" in a for a in found["attention"])
    assert any("no live worker" in a for a in found["attention"])

    shown = sluice_status(env)
    assert shown.returncode == 1 and "NEEDS ATTENTION" in shown.stdout and "Traceback" not in shown.stderr
    assert "dead letters    1" in shown.stdout


def test_a_live_worker_and_empty_queues_are_healthy_until_its_drain_lags(
    env, db, no_live_worker, nothing_parked
):
    with db.connection() as conn:
        fleet.beat(conn, "status-test:1", 3, None)
    try:
        done = sluice_status(env, "--json")
        assert done.returncode == 0, done.stdout
        found = json.loads(done.stdout)
        assert found["healthy"] and found["attention"] == []
        assert found["drain"] == {"workers": 1, "drain_threads": 3, "drain_lag_seconds": 0}

        with db.connection() as conn:  # its drain last saw a message sent 5 minutes ago
            fleet.beat(conn, "status-test:1", 3, time.time() - 300)
        lagging = sluice_status(env, "--json")
        assert lagging.returncode == 1
        assert json.loads(lagging.stdout)["attention"][0].startswith("drain lag 300 s is over 120 s")
        assert sluice_status(env, "--json", "--max-lag", "600").returncode == 0
    finally:
        with db.connection() as conn:
            fleet.leave(conn, "status-test:1")


def test_parked_events_need_attention(env, db, no_live_worker, nothing_parked):
    with db.connection() as conn:
        fleet.beat(conn, "status-test:2", 3, None)
    try:
        assert sluice_status(env, "--json").returncode == 0
        insert_parked_event(db, make_tenant(db)[0])
        done = sluice_status(env, "--json")
        assert done.returncode == 1 and json.loads(done.stdout)["parked_events"] == 1
        assert json.loads(done.stdout)["attention"] == ["events parked: 1 (sluice dlq list)"]
        assert "parked events   1" in sluice_status(env).stdout
    finally:
        with db.connection() as conn:
            fleet.leave(conn, "status-test:2")


def test_unreachable_postgres_is_reported_not_a_traceback(env):
    done = sluice_status({**env, "SLUICE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    found = json.loads(done.stdout)
    assert "postgres" in found["errors"] and found["events"] == {"visible": 0, "in_flight": 0}


def test_figures_for_some_apps_count_only_those_apps(stack, db):
    mine, theirs = make_tenant(db)[0], make_tenant(db)[0]
    insert_events(db, mine)
    insert_events(db, theirs)
    insert_events(db, theirs)
    with db.connection() as conn:
        connector = pipeline_rows.create_connector(conn, mine, "noop", {})
        pipeline = pipeline_rows.create_pipeline(conn, mine, "events", str(connector["id"]))
        with conn.cursor() as cur:
            cur.execute("UPDATE events SET stored_at = now() - interval '2 hours' WHERE app_id = %s", (mine,))
        render_jobs.create(conn, theirs, "export", "Event")
        insert_events(db, mine)  # 5 stored now, 5 two hours ago

        minutes = status.stored_per_minute(conn, [mine])
        assert len(minutes) == 60 and sum(m["stored"] for m in minutes) == 5 and minutes[-1]["stored"] == 5
        assert sum(m["stored"] for m in status.stored_per_minute(conn, [theirs])) == 10
        assert status.stored_per_second(conn, [mine]) == pytest.approx(5 / 60)
        [found] = status.pipelines(conn, [mine])
        assert found["id"] == str(pipeline["id"]) and found["state"] == "INIT" and found["driver"] == "noop"
        assert found["lag_seconds"] >= 7200  # nothing delivered: its oldest row waits two hours
        assert status.pipelines(conn, [theirs]) == []
        assert status.oldest_unfinished_export(conn, [mine]) is None
        assert status.oldest_unfinished_export(conn, [theirs])["status"] == "queued"
        assert status.render_jobs(conn, [theirs])["export"]["queued"] == 1
        assert status.render_jobs(conn, [mine])["export"]["queued"] == 0


def terminal_run(cmd, env, stream: str, until: str, count: int = 1):
    """Run `cmd` with one of its streams on a pseudo-terminal; return (process, what it showed there)."""
    leader, follower = pty.openpty()
    other = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    other[stream] = follower
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, **other)
    os.close(follower)
    seen = b""

    def read() -> bool:
        nonlocal seen
        if not select.select([leader], [], [], 0.1)[0]:
            return False  # nothing shown yet: a blocking read would outlast the deadline
        try:
            seen += os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            return True
        return seen.decode(errors="replace").count(until) >= count

    wait_for(read, 60, f"{until!r} on the terminal")
    return proc, seen.decode(errors="replace"), leader


def test_a_pipelines_lag_reads_one_row_of_its_backlog(db):
    # The ops page asks every few seconds, for every pipeline of the person's apps.
    app_id = make_tenant(db)[0]
    insert_many_events(db, app_id, 20_000)
    with db.connection() as conn:
        connector = pipeline_rows.create_connector(conn, app_id, "noop", {})
        pipeline_rows.create_pipeline(conn, app_id, "events", str(connector["id"]))
    with db.connection() as conn:
        with conn.cursor() as cur:  # costs under which a scan of the whole backlog looks cheaper
            cur.execute("SET LOCAL random_page_cost = 1000")
        [found] = status.pipelines(conn, [app_id])
        with conn.cursor() as cur:  # what this transaction read, as Postgres counts it
            cur.execute(
                "SELECT idx_tup_fetch + seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'events'"
            )
            [(touched,)] = cur.fetchall()
    assert found["lag_seconds"] >= 0
    assert touched <= 10, f"{touched} rows read to find one pipeline's oldest undelivered event"


def test_dlq_replay_shows_progress_on_a_terminal_and_nothing_in_json_or_a_pipe(env, provisioned):
    sqs = boto_sqs(env)
    for n in range(3):
        sqs.send_message(QueueUrl=provisioned["dlq_url"], MessageBody=f"parked {n}")

    proc, shown, leader = terminal_run([SLUICE, "dlq", "replay"], env, "stderr", "3/3 (100%)")
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    assert proc.returncode == 0 and "moved 3 messages" in out.decode()
    assert "moving dead-letter messages back: 3/3 (100%)" in shown

    for n in range(2):
        sqs.send_message(QueueUrl=provisioned["dlq_url"], MessageBody=f"again {n}")
    piped = run(SLUICE, "dlq", "replay", "--json", env=env)
    assert piped.returncode == 0 and piped.stderr == ""
    assert len(json.loads(piped.stdout)["replayed"]) == 2


def test_watch_redraws_in_place_on_a_terminal_until_ctrl_c(env, no_live_worker):
    proc, shown, leader = terminal_run(
        [SLUICE, "status", "--watch", "--interval", "0.2"], env, "stdout", "oldest export", count=2
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 1  # no live worker
    os.close(leader)
    assert shown.count("\x1b[H\x1b[2JSluice NEEDS ATTENTION") >= 2 and "Traceback" not in shown


def boto_sqs(env):
    from services import aws
    from services.settings import CommonSettings

    return aws.client(CommonSettings.from_env(env), "sqs")
