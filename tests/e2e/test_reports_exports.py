"""Reports and exports end to end: events posted to the ingest API, drained and rendered by a real
Celery worker, files fetched through their presigned links the way a consumer would."""

import csv
import hashlib
import io
import json
import os
import signal

import boto3
import requests

from devtools import devstack
from services import tenancy
from tests.factories import REPORT_REQUEST, insert_many_events, make_tenant
from tests.helpers import query, wait_for

T0 = 1_700_000_000_000
EVENTS = [
    {"customer": "ACME", "product": "WEB", "type": "LOGIN", "timestamp": T0 + 500, "context": ["eu", "a, b"]},
    {"customer": "ACME", "product": "WEB", "type": "CLICK", "timestamp": T0 + 100, "context": ['say "hi"']},
    {"customer": "ACME", "product": "APP", "type": "LOGIN", "timestamp": T0 + 200, "context": []},
    {"customer": "BETA", "product": "WEB", "type": "LOGIN", "timestamp": T0 + 300, "context": ["x"]},
    {
        "customer": "ACME",
        "product": "WEB",
        "type": "LOGOUT",
        "timestamp": T0 + 400,
        "context": ["line\nbreak"],
    },
    {"customer": "ACME", "product": "WEB", "type": "LATE", "timestamp": T0 + 9_000, "context": []},
]


def post_events(ingest, tenant, events) -> list[dict]:
    resp = requests.post(ingest.url + "/events", json=events, auth=(str(tenant[0]), tenant[1]), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_stored(stack, app_id, count):
    wait_for(
        lambda: (
            query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,))[0][0]
            == count
        ),
        30,
        f"{count} events stored",
    )


def test_a_report_file_holds_exactly_the_posted_events_that_match(stack, services, tenant, db):
    ingest, control, _worker = services.ingest(), services.control(), services.worker()
    other = make_tenant(db)
    posted = post_events(ingest, tenant, EVENTS)
    post_events(ingest, other, EVENTS)  # the same events for another app never show in ours
    wait_stored(stack, tenant[0], len(EVENTS))
    auth = (str(tenant[0]), tenant[1])

    job = requests.post(
        control.url + "/reports",
        auth=auth,
        timeout=10,
        json={"filter": {"customer": "ACME", "product": "WEB", "start": str(T0), "end": T0 + 1_000}},
    ).json()
    availability = f"{control.url}/reports/{job['source']}/availability"
    done = wait_for(
        lambda: (j := requests.get(availability, auth=auth, timeout=5).json())["status"] != "RUNNING" and j,
        60,
        "report COMPLETE",
    )
    assert done["status"] == "COMPLETE" and done["progress"] == {"rows": 3}

    link = requests.get(f"{control.url}/reports/{job['source']}", auth=auth, timeout=5).json()["link"]
    rows = list(csv.DictReader(io.StringIO(requests.get(link, timeout=10).text)))
    expected = sorted(
        (
            e
            for e in posted
            if e["customer"] == "ACME" and e["product"] == "WEB" and e["timestamp"] < T0 + 1_000
        ),
        key=lambda e: e["timestamp"],
    )
    assert [
        {
            **r,
            "timestamp": int(r["timestamp"]),
            "context": json.loads(r["context"]),
            "sequence": int(r["sequence"]),
        }
        for r in rows
    ] == expected
    # Another app cannot see the job, nor tell it from one that does not exist.
    assert requests.get(availability, auth=(str(other[0]), other[1]), timeout=5).status_code == 404


def test_an_export_comes_as_json_lines_files_with_exact_sizes(stack, services, tenant):
    ingest, control = services.ingest(), services.control()
    services.worker(SLUICE_EXPORT_FILE_MAX_BYTES="400")  # a few events per file
    posted = post_events(ingest, tenant, EVENTS) + post_events(ingest, tenant, EVENTS[:3])
    wait_stored(stack, tenant[0], len(posted))
    mews = {"ClientToken": "ct", "AccessToken": tenant[1], "Client": "e2e 1.0"}

    export_id = requests.post(
        control.url + "/api/connector/v1/exports/add", timeout=10, json={**mews, "EntityType": "Event"}
    ).json()["Export"]["Id"]

    def finished():
        [export] = requests.post(
            control.url + "/api/connector/v1/exports/getAll",
            timeout=10,
            json={**mews, "ExportIds": [export_id]},
        ).json()["Exports"]
        return export["Status"] not in ("Pending", "Processing") and export

    export = wait_for(finished, 60, "export Success")
    assert export["Status"] == "Success" and len(export["Files"]) > 1
    lines = []
    for f in export["Files"]:
        body = requests.get(f["Url"], timeout=10).content
        assert len(body) == f["SizeInBytes"] <= 400
        lines += body.decode().splitlines()
    key = lambda e: (e["batch"], e["sequence"])  # noqa: E731
    assert sorted((json.loads(line) for line in lines), key=key) == sorted(posted, key=key)


def test_a_worker_killed_mid_render_leaves_the_job_to_another_worker(stack, services, tenant, db, names):
    app_id, key = tenant
    total = 400_000  # ~54 MB of CSV: about ten 5 MiB parts
    insert_many_events(db, app_id, total)
    fast = {
        "SLUICE_JOB_HEARTBEAT_SECONDS": "0.05",
        "SLUICE_JOB_STALE_SECONDS": "2",
        "SLUICE_RENDER_PART_BYTES": str(5 * 1024 * 1024),
    }
    control, doomed = services.control(), services.worker("doomed", **fast)
    services.beat(SLUICE_JOB_SWEEP_SECONDS="0.5", **fast)
    source = requests.post(
        control.url + "/reports",
        json=REPORT_REQUEST,
        auth=(str(app_id), key),
        timeout=10,
    ).json()["source"]
    job_id = source[4:]

    def job(columns="status"):
        return query(stack.database_url, f"SELECT {columns} FROM render_jobs WHERE id = %s", (job_id,))[0]

    # Past the first parts, freeze S3 (moto) so the render stops mid-stream with its multipart
    # upload open, then kill the worker there: no clean shutdown, no chance to record anything.
    devstack.wait_until(lambda: job("rows_written")[0] >= 100_000, 60, "render well under way", interval=0.01)
    moto = stack.procs["moto"]
    os.kill(moto.pid, signal.SIGSTOP)
    try:
        assert job() == ("running",)
        os.killpg(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait()
    finally:
        os.kill(moto.pid, signal.SIGCONT)
    s3 = boto3.client("s3", endpoint_url=stack.aws_endpoint_url, region_name="us-east-1")
    prefix = f"reports/{app_id}/{job_id}/"
    assert s3.list_multipart_uploads(Bucket=names["exports_bucket"], Prefix=prefix).get("Uploads")
    assert job() == ("running",)

    services.worker("rescuer", **fast)
    wait_for(lambda: job() == ("done",), 90, "the job finished by the other worker")

    assert job("attempts, rows_written") == (2, total)
    assert not s3.list_multipart_uploads(Bucket=names["exports_bucket"], Prefix=prefix).get("Uploads")
    link = requests.get(f"{control.url}/reports/{source}", auth=(str(app_id), key), timeout=5).json()["link"]
    body = requests.get(link, timeout=60).content
    [(size, row_count, sha256)] = query(
        stack.database_url,
        "SELECT size_bytes, row_count, sha256 FROM render_files WHERE job_id = %s",
        (job_id,),
    )
    assert (len(body), hashlib.sha256(body).hexdigest(), row_count) == (size, sha256, total)
    sequences = [int(line.rsplit(b",", 1)[1]) for line in body.splitlines()[1:]]
    assert sequences == list(range(total))  # every event once, in time order


def test_one_apps_backlog_does_not_hold_back_another_apps_report(stack, services, db):
    control = services.control(SLUICE_RENDER_JOBS_PER_APP="50")
    busy, other = make_tenant(db), make_tenant(db)
    insert_many_events(db, busy[0], 5_000)
    insert_many_events(db, other[0], 10)

    def start(tenant) -> str:
        resp = requests.post(
            control.url + "/reports", json=REPORT_REQUEST, auth=(str(tenant[0]), tenant[1]), timeout=10
        )
        assert resp.status_code == 200, resp.text
        return resp.json()["job"]

    backlog = [start(busy) for _ in range(50)]
    lone = start(other)  # queued last, behind the whole backlog
    services.worker()  # one render at a time

    def completed(job_id):
        [(status, completed_at)] = query(
            stack.database_url, "SELECT status, completed_at FROM render_jobs WHERE id = %s", (job_id,)
        )
        return status == "done" and completed_at

    lone_done = wait_for(lambda: completed(lone), 120, "the other app's report")
    [(before,)] = query(
        stack.database_url,
        "SELECT count(*) FROM render_jobs WHERE id = ANY(%s::uuid[]) AND completed_at < %s",
        (backlog, lone_done),
    )
    assert before <= 2  # not 50: the lone report went ahead of the backlog
    wait_for(lambda: all(completed(j) for j in backlog), 300, "the backlog, all of it")


def test_the_sweep_deletes_a_deleted_apps_files_and_stored_events(stack, services, tenant, db, names):
    ingest, control = services.ingest(), services.control()
    services.worker(SLUICE_JOB_STALE_SECONDS="1")  # a deletion waits this long for renders in flight
    services.beat(SLUICE_JOB_SWEEP_SECONDS="0.5")
    post_events(ingest, tenant, EVENTS)
    wait_stored(stack, tenant[0], len(EVENTS))
    auth = (str(tenant[0]), tenant[1])
    source = requests.post(control.url + "/reports", json=REPORT_REQUEST, auth=auth, timeout=10).json()[
        "source"
    ]
    wait_for(
        lambda: (
            requests.get(f"{control.url}/reports/{source}/availability", auth=auth, timeout=5).json()[
                "status"
            ]
            == "COMPLETE"
        ),
        60,
        "report COMPLETE",
    )
    s3 = boto3.client("s3", endpoint_url=stack.aws_endpoint_url, region_name="us-east-1")

    def files():
        return s3.list_objects_v2(Bucket=names["exports_bucket"], Prefix=f"reports/{tenant[0]}/").get(
            "KeyCount", 0
        )

    assert files() == 1
    with db.connection() as conn:
        tenancy.delete_app(conn, tenant[0])

    def gone():
        [(events, finished)] = query(
            stack.database_url,
            "SELECT (SELECT count(*) FROM events WHERE app_id = %(app)s),"
            " (SELECT finished_at FROM app_deletions WHERE app_id = %(app)s)",
            {"app": tenant[0]},
        )
        return events == 0 and finished is not None and files() == 0

    wait_for(gone, 60, "the app's files and events deleted by the sweep")
