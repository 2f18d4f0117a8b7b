"""Deleting an app deletes its files and stored events too: at once its row and keys, then (the
worker sweep) everything it left in S3 and Postgres, with progress operators can read."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services import aws, render_jobs, tenancy
from services.settings import WorkerSettings
from services.worker import app_purge, render
from tests.factories import MOESIF_CALL, insert_events, insert_many_events, insert_parked_event, person
from tests.helpers import client_for, control_app, log_in, query

SLUICE = str(Path(sys.executable).parent / "sluice")


@pytest.fixture
def worker(stack, names, provisioned):
    settings = stack.settings(WorkerSettings, **names, job_stale_seconds=0)
    return settings, aws.client(settings, "s3")


def files_of(s3, settings, app_id) -> list[str]:
    return [
        o["Key"]
        for prefix in render.app_prefixes(app_id)
        for o in s3.list_objects_v2(Bucket=settings.exports_bucket, Prefix=prefix).get("Contents", [])
    ]


def stored(stack, app_id) -> tuple[int, int, int]:
    [counts] = query(
        stack.database_url,
        "SELECT (SELECT count(*) FROM events WHERE app_id = %(app)s),"
        " (SELECT count(*) FROM api_calls WHERE app_id = %(app)s),"
        " (SELECT count(*) FROM parked_events WHERE app_id = %(app)s)",
        {"app": app_id},
    )
    return counts


def insert_api_call(db, app_id):
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb, status,
                                      ip_address, request, response, received_at)
               VALUES (%s, %s, 0, now(), now(), 'https://a.test/', 'GET', 200, '10.0.0.1', %s, %s, now())""",
            (
                app_id,
                str(uuid.uuid4()),
                json.dumps(MOESIF_CALL["request"]),
                json.dumps(MOESIF_CALL["response"]),
            ),
        )


def rendered_files(db, s3, settings, app_id):
    """A report and an export of the app, rendered: files in S3."""
    for kind in ("report", "export"):
        with db.connection() as conn:
            job = render_jobs.create(conn, app_id, kind, "Event")
        assert render.run(settings, db, s3, job.id) == "done"


def test_deleting_an_app_deletes_its_files_and_stored_events(stack, names, outbox, db, worker):
    settings, s3 = worker
    pat, neighbour = person(db), person(db)
    for who in (pat, neighbour):
        insert_many_events(db, who.app_id, 25_000)  # more than one batch of deletes
        insert_events(db, who.app_id)
        insert_api_call(db, who.app_id)
        insert_parked_event(db, who.app_id)
        rendered_files(db, s3, settings, who.app_id)
    assert len(files_of(s3, settings, pat.app_id)) == 2 and stored(stack, pat.app_id) == (25_005, 1, 1)

    client = client_for(control_app(stack, outbox, **names))
    session = {"session_key": log_in(client, outbox, pat.email)}
    assert client.delete(f"/api/1/app/{pat.app_id}", json=session).status_code == 200

    [pending] = [d for d in deletions(stack) if d["app_id"] == pat.app_id]
    assert (pending["state"], pending["name"], pending["org_id"]) == ("pending", "app", pat.org_id)

    assert pat.app_id in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)

    assert files_of(s3, settings, pat.app_id) == [] and stored(stack, pat.app_id) == (0, 0, 0)
    [finished] = [d for d in deletions(stack) if d["app_id"] == pat.app_id]
    assert finished["state"] == "finished" and finished["finished_at"]
    assert (finished["files_deleted"], finished["rows_deleted"], finished["last_error"]) == (2, 25_007, None)
    # The neighbour's files and events are untouched, and a finished deletion is not run again.
    assert len(files_of(s3, settings, neighbour.app_id)) == 2
    assert stored(stack, neighbour.app_id) == (25_005, 1, 1)
    assert pat.app_id not in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)


def test_a_deletion_out_of_time_goes_on_at_the_next_sweep(stack, db, worker):
    settings, s3 = worker
    pat = person(db)
    insert_many_events(db, pat.app_id, 25_000)
    app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)  # what other tests deleted
    with db.connection() as conn:
        tenancy.delete_app(conn, pat.app_id)
    assert pat.app_id not in app_purge.purge_deleted_apps(
        settings, db, s3, budget_seconds=0
    )  # no time at all
    assert stored(stack, pat.app_id)[0] > 0
    assert pat.app_id in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)
    assert stored(stack, pat.app_id) == (0, 0, 0)


def test_events_stored_after_the_deletion_finished_are_deleted_too(stack, db, worker):
    # The queue lagged: events accepted just before the deletion reach Postgres after the purge.
    settings, s3 = worker
    pat = person(db)
    with db.connection() as conn:
        tenancy.delete_app(conn, pat.app_id)
    assert pat.app_id in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)
    insert_events(db, pat.app_id)
    insert_parked_event(db, pat.app_id)
    assert stored(stack, pat.app_id) == (5, 0, 1)

    assert pat.app_id in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)
    assert stored(stack, pat.app_id) == (0, 0, 0)
    [finished] = [d for d in deletions(stack) if d["app_id"] == pat.app_id]
    assert (finished["state"], finished["rows_deleted"]) == ("finished", 6)
    assert pat.app_id not in app_purge.purge_deleted_apps(settings, db, s3, budget_seconds=60)


def deletions(stack) -> list[dict]:
    """What an operator sees: `sluice admin deletions --json`."""
    done = subprocess.run(
        [SLUICE, "admin", "deletions", "--json"], env=stack.env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["deletions"]
