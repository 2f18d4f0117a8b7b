"""Rendering reports and exports into S3 (moto server) from the real Postgres, and the job sweep."""

import csv
import hashlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from celery import Celery
from prometheus_client import REGISTRY

from services import aws, render_jobs
from services.settings import WorkerSettings
from services.worker import render
from shared.channels import RENDER_QUEUE, RENDER_TASK
from tests.factories import REPORT_EVENTS as EVENTS
from tests.factories import insert_events, insert_many_events, make_tenant
from tests.helpers import query, wait_for


@pytest.fixture
def settings(stack, names, provisioned, no_open_jobs):
    return stack.settings(WorkerSettings, **names, job_heartbeat_seconds=0.05, job_stale_seconds=1.0)


@pytest.fixture
def s3(settings):
    return aws.client(settings, "s3")


def new_job(db, app_id, kind="report", entity="Event", job_filter=None) -> render_jobs.Job:
    with db.connection() as conn:
        return render_jobs.create(conn, app_id, kind, entity, job_filter or {})


def load_job(db, app_id, job: render_jobs.Job) -> render_jobs.Job:
    with db.connection() as conn:
        return render_jobs.get(conn, app_id, job.kind, job.id)


def finished(kind: str, status: str) -> float:
    """Render jobs that ended so, as this process's metrics count them."""
    labels = {"kind": kind, "status": status}
    return REGISTRY.get_sample_value("sluice_render_jobs_finished_total", labels) or 0


def rendered(kind: str) -> float:
    return REGISTRY.get_sample_value("sluice_render_duration_seconds_count", {"kind": kind}) or 0


def fetch(s3, settings, key) -> bytes:
    return s3.get_object(Bucket=settings.exports_bucket, Key=key)["Body"].read()


def test_report_holds_the_apps_matching_events_in_time_order(settings, s3, db, tenant):
    app_id, _ = tenant
    batch = insert_events(db, app_id)
    insert_events(db, app_id + 100_000)  # no such app can match; rows of another tenant never show
    job = new_job(
        db,
        app_id,
        job_filter={
            "customer": "ACME",
            "product": "WEB",
            "start": 1_700_000_000_100,
            "end": 1_700_000_000_900,
        },
    )

    before = finished("report", "done"), rendered("report")
    assert render.run(settings, db, s3, job.id) == "done"
    assert (finished("report", "done"), rendered("report")) == (before[0] + 1, before[1] + 1)

    done = load_job(db, app_id, job)
    assert done.status == "done" and done.rows_written == 2 and len(done.files) == 1
    body = fetch(s3, settings, done.files[0].s3_key)
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0] == ["customer", "product", "type", "timestamp", "context", "batch", "sequence"]
    # end is exclusive; CLICK (100) comes before LOGIN (300); APP and OTHER are filtered out.
    assert [(r[2], int(r[3]), json.loads(r[4]), r[5], int(r[6])) for r in rows[1:]] == [
        ("CLICK", 1_700_000_000_100, EVENTS[1][4], batch, 1),
        ("LOGIN", 1_700_000_000_300, EVENTS[0][4], batch, 0),
    ]
    f = done.files[0]
    assert (f.size_bytes, f.row_count, f.sha256) == (len(body), 2, hashlib.sha256(body).hexdigest())


def test_report_with_no_match_is_a_header_only_file(settings, s3, db, tenant):
    job = new_job(db, tenant[0], job_filter={"customer": "NOBODY"})
    assert render.run(settings, db, s3, job.id) == "done"
    done = load_job(db, tenant[0], job)
    assert fetch(s3, settings, done.files[0].s3_key) == render.CSV_HEADER


def test_a_large_report_streams_through_a_multipart_upload(settings, s3, db, tenant):
    app_id, _ = tenant
    insert_many_events(db, app_id, 120_000)  # ~9 MB of CSV: two 5 MiB parts
    job = new_job(db, app_id)
    assert render.run(settings, db, s3, job.id) == "done"

    done = load_job(db, app_id, job)
    f = done.files[0]
    head = s3.head_object(Bucket=settings.exports_bucket, Key=f.s3_key)
    assert head["ETag"].strip('"').endswith("-2")  # S3's mark of an object made of 2 parts
    body = fetch(s3, settings, f.s3_key)
    assert (f.row_count, f.size_bytes, f.sha256) == (120_000, len(body), hashlib.sha256(body).hexdigest())
    timestamps = [int(line.split(b",")[3]) for line in body.splitlines()[1:]]
    assert timestamps == sorted(timestamps) and len(timestamps) == 120_000
    assert not s3.list_multipart_uploads(Bucket=settings.exports_bucket).get("Uploads")


def test_a_report_over_the_row_cap_ends_timeout_without_a_file(stack, names, provisioned, s3, db, tenant):
    settings = stack.settings(WorkerSettings, **names, report_max_rows=3)
    job = new_job(db, tenant[0])
    insert_events(db, tenant[0])  # 5 rows > 3
    assert render.run(settings, db, s3, job.id) == "timeout"
    done = load_job(db, tenant[0], job)
    assert done.status == "timeout" and done.files == []
    listed = s3.list_objects_v2(Bucket=settings.exports_bucket, Prefix=render.job_prefix(done))
    assert listed.get("KeyCount", 0) == 0


def test_a_render_past_the_time_limit_is_cancelled(stack, names, provisioned, s3, db, tenant):
    settings = stack.settings(WorkerSettings, **names, render_max_seconds=0, job_heartbeat_seconds=0.01)
    insert_many_events(db, tenant[0], 100_000)
    report, export = new_job(db, tenant[0]), new_job(db, tenant[0], kind="export")
    assert render.run(settings, db, s3, report.id) == "timeout"  # Barchart's word for it
    assert render.run(settings, db, s3, export.id) == "failed"  # Mews has none but Failed
    for job in (report, export):
        done = load_job(db, tenant[0], job)
        assert done.files == [] and done.rows_written < 100_000
    assert not s3.list_multipart_uploads(Bucket=settings.exports_bucket).get("Uploads")


def test_an_export_is_json_lines_split_into_files_by_size(stack, names, provisioned, s3, db, tenant):
    settings = stack.settings(WorkerSettings, **names, export_file_max_bytes=2000)
    app_id, _ = tenant
    insert_many_events(db, app_id, 100)
    job = new_job(db, app_id, kind="export", entity="Event")
    assert render.run(settings, db, s3, job.id) == "done"

    done = load_job(db, app_id, job)
    assert len(done.files) > 3 and done.expires_at is not None
    lines = []
    for f in done.files:
        body = fetch(s3, settings, f.s3_key)
        assert f.size_bytes == len(body) <= 2000 and f.sha256 == hashlib.sha256(body).hexdigest()
        assert f.row_count == body.count(b"\n")
        lines += body.decode().splitlines()
    exported = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in exported] == list(range(100))
    assert exported[7] == {
        "customer": "ACME",
        "product": "WEB",
        "type": "PAGE-VIEW",
        "timestamp": 1700000000007,
        "context": ["session-7", "some context text"],
        "batch": exported[0]["batch"],
        "sequence": 7,
    }


def test_an_api_call_export_keeps_json_bodies_intact(settings, s3, db, tenant):
    app_id, _ = tenant
    request = {
        "time": "2024-01-02T03:04:05.000000Z",
        "uri": "https://api.example.com/a?b=c",
        "verb": "POST",
        "ip_address": "10.0.0.1",
        "body": {"text": 'back\\slash "quote"\nnewline \u0001'},
    }
    response = {"time": "2024-01-02T03:04:05.100000Z", "status": 201, "body": None}
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb,
                                              status, ip_address, user_id, blocked_by, request, response,
                                              received_at)
                       VALUES (%s, %s, 0, now(), now(), 'https://api.example.com/a?b=c', 'POST', 201,
                               '10.0.0.1', 'user-1', 'rule-7', %s, %s, now())""",
            (app_id, str(uuid.uuid4()), json.dumps(request), json.dumps(response)),
        )
    job = new_job(db, app_id, kind="export", entity="ApiCall")
    assert render.run(settings, db, s3, job.id) == "done"

    body = fetch(s3, settings, load_job(db, app_id, job).files[0].s3_key).decode()
    assert body.count("\n") == 1
    exported = json.loads(body)
    assert exported["request"] == request and exported["response"] == response
    assert exported["user_id"] == "user-1" and exported["blocked_by"] == "rule-7"


def test_a_job_renders_once_however_often_its_task_arrives(settings, s3, db, tenant):
    job = new_job(db, tenant[0])
    insert_events(db, tenant[0])
    assert render.run(settings, db, s3, job.id) == "done"
    assert render.run(settings, db, s3, job.id) is None  # redelivered: the claim finds it done
    done = load_job(db, tenant[0], job)
    assert done.attempts == 1 and done.rows_written == 5


def test_an_attempt_that_lost_its_claim_cannot_finish(settings, s3, db, tenant, stack):
    job = new_job(db, tenant[0])
    insert_events(db, tenant[0])
    with db.connection() as conn:
        first = render_jobs.claim(conn, job.id, settings.job_stale_seconds, settings.job_max_attempts)
    query(
        stack.database_url,
        "UPDATE render_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s RETURNING id",
        (job.id,),
    )
    assert render.run(settings, db, s3, job.id) == "done"  # a second worker takes the silent job
    with db.connection() as conn:
        assert not render_jobs.heartbeat(conn, first, 3)
        assert not render_jobs.finish(conn, first, "failed", 0, error="late")
    done = load_job(db, tenant[0], job)
    assert (done.status, done.attempts, done.rows_written) == ("done", 2, 5)


@pytest.fixture
def celery_client(stack):
    # A Redis database of its own, so these tasks never reach the e2e tests' workers.
    url = stack.redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return Celery("sweep-test", broker=url, set_as_current=False), redis.Redis.from_url(url)


def backdate(stack, *jobs, **columns):
    """Move the jobs' timestamps into the past: (column=seconds ago)."""
    sets = ", ".join(f"{c} = now() - make_interval(secs => {int(ago)})" for c, ago in columns.items())
    query(
        stack.database_url,
        f"UPDATE render_jobs SET {sets} WHERE id = ANY(%s::uuid[]) RETURNING id",
        ([j.id for j in jobs],),
    )


def render_tasks(broker) -> list[dict]:
    """The render tasks waiting in the broker: on the render queue, naming no job."""
    assert broker.llen("celery") == 0  # the default queue holds none of them
    return [json.loads(m) for m in broker.lrange(RENDER_QUEUE, 0, -1)]


def test_the_sweep_retries_silent_jobs_and_fails_hopeless_ones(
    settings, s3, db, tenant, stack, celery_client
):
    app, broker = celery_client
    silent, hopeless, fresh = (new_job(db, tenant[0]) for _ in range(3))
    for job in (silent, hopeless, fresh):
        with db.connection() as conn:
            render_jobs.claim(conn, job.id, settings.job_stale_seconds, settings.job_max_attempts)
    backdate(stack, silent, hopeless, fresh, created_at=60)
    backdate(stack, silent, hopeless, heartbeat_at=60)
    query(
        stack.database_url,
        "UPDATE render_jobs SET attempts = %s WHERE id = %s RETURNING id",
        (settings.job_max_attempts, hopeless.id),
    )

    failed_before = finished("report", "failed")
    result = render.sweep(settings, db, s3, app)

    assert result["requeued"] == [silent.id] and result["failed"] == [hopeless.id]
    assert finished("report", "failed") == failed_before + 1
    assert load_job(db, tenant[0], silent).status == "queued"
    assert load_job(db, tenant[0], hopeless).status == "failed"
    assert load_job(db, tenant[0], fresh).status == "running"
    assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in render_tasks(broker)] == [
        (RENDER_TASK, "()")
    ]
    assert render.run_next(settings, db, s3) == "done"  # the task renders the requeued job
    assert load_job(db, tenant[0], silent).status == "done"


def test_the_sweep_never_sends_a_job_a_second_task(settings, s3, db, tenant, stack, celery_client):
    app, broker = celery_client
    jobs = [new_job(db, tenant[0]) for _ in range(3)]
    for _ in jobs:
        render_jobs.enqueue(app)  # what the control API sends with each job
    backdate(stack, *jobs, created_at=60)  # long queued, behind some other app's backlog

    assert [render.sweep(settings, db, s3, app)["sent"] for _ in range(3)] == [0, 0, 0]
    assert len(render_tasks(broker)) == 3

    broker.delete(RENDER_QUEUE)  # the tasks are lost (Redis restarted without its data)
    assert [render.sweep(settings, db, s3, app)["sent"] for _ in range(3)] == [3, 0, 0]
    assert len(render_tasks(broker)) == 3
    young = new_job(db, tenant[0])  # its own task may still be on the way: not the sweep's to send
    assert render.sweep(settings, db, s3, app)["sent"] == 0
    assert [render.run_next(settings, db, s3) for _ in range(5)] == ["done"] * 4 + [None]
    assert load_job(db, tenant[0], young).status == "done"


def test_the_next_job_goes_to_the_app_served_least_recently(settings, db):
    a, b, c = (make_tenant(db)[0] for _ in range(3))
    backlog = [new_job(db, a) for _ in range(4)]
    lone = new_job(db, b)
    later = new_job(db, c)
    order = []
    with db.connection() as conn:
        for _ in range(7):
            job = render_jobs.claim_next(conn, settings.job_max_attempts)
            order.append(job and job.id)
    # A's oldest job first (nobody was served yet), then the apps never served, then A's backlog;
    # while A's first render runs, A has the most running, so B and C go before A's second.
    assert order == [backlog[0].id, lone.id, later.id, *[j.id for j in backlog[1:]], None]


def test_an_app_with_fewer_running_renders_goes_first(settings, db):
    a, b = (make_tenant(db)[0] for _ in range(2))
    a_jobs, b_jobs = [new_job(db, a) for _ in range(3)], [new_job(db, b) for _ in range(3)]
    with db.connection() as conn:
        first = render_jobs.claim_next(conn, settings.job_max_attempts)  # A's, the oldest
        second = render_jobs.claim_next(conn, settings.job_max_attempts)  # B's: A has one running
        render_jobs.finish(conn, first, "done", 0)
        third = render_jobs.claim_next(
            conn, settings.job_max_attempts
        )  # A's: none running, served longer ago
    assert [first.id, second.id, third.id] == [a_jobs[0].id, b_jobs[0].id, a_jobs[1].id]


def test_the_sweep_expires_exports_and_deletes_their_files(settings, s3, db, tenant, stack, celery_client):
    app_id, _ = tenant
    insert_events(db, app_id)
    job = new_job(db, app_id, kind="export")
    assert render.run(settings, db, s3, job.id) == "done"
    key = load_job(db, app_id, job).files[0].s3_key
    query(
        stack.database_url,
        "UPDATE render_jobs SET expires_at = now() - interval '1 second' WHERE id = %s RETURNING id",
        (job.id,),
    )

    assert render.sweep(settings, db, s3, celery_client[0])["expired"] == [job.id]

    expired = load_job(db, app_id, job)
    assert expired.status == "expired" and expired.files == []
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=settings.exports_bucket, Key=key)


def leftovers(s3, settings, job) -> tuple[list, list]:
    """(objects, unfinished multipart uploads) under the job's prefix."""
    prefix = render.job_prefix(job)
    objects = s3.list_objects_v2(Bucket=settings.exports_bucket, Prefix=prefix).get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=settings.exports_bucket, Prefix=prefix).get("Uploads", [])
    return objects, uploads


def test_an_export_that_times_out_deletes_every_file_it_wrote(stack, names, provisioned, s3, db, tenant):
    # Files of about 9 rows each: many are written (one PUT each) before the time limit stops it.
    settings = stack.settings(
        WorkerSettings, **names, export_file_max_bytes=2000, render_max_seconds=1, job_heartbeat_seconds=0.05
    )
    insert_many_events(db, tenant[0], 10_000)
    job = new_job(db, tenant[0], kind="export")
    assert render.run(settings, db, s3, job.id) == "failed"
    done = load_job(db, tenant[0], job)
    assert done.files == [] and done.rows_written >= 100  # it had written files: 10 or more
    assert leftovers(s3, settings, job) == ([], [])


def test_an_export_that_fails_part_way_deletes_every_file_it_wrote(stack, names, provisioned, s3, db, tenant):
    settings = stack.settings(
        WorkerSettings, **names, export_file_max_bytes=20_000, job_heartbeat_seconds=0.05
    )
    insert_many_events(db, tenant[0], 50_000)
    job = new_job(db, tenant[0], kind="export")
    with ThreadPoolExecutor(1) as pool:
        rendering = pool.submit(render.run, settings, db, s3, job.id)
        wait_for(lambda: load_job(db, tenant[0], job).rows_written >= 1000, 60, "ten files written")
        # The fault: Postgres drops the connection the export reads from.
        query(
            stack.database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%%COPY (%%' AND pid <> pg_backend_pid()",
        )
        assert rendering.result(60) == "failed"
    assert load_job(db, tenant[0], job).files == []
    assert leftovers(s3, settings, job) == ([], [])


def test_the_sweep_deletes_what_dead_attempts_wrote_when_it_fails_their_job(
    settings, s3, db, tenant, stack, celery_client
):
    job = new_job(db, tenant[0], kind="export")
    with db.connection() as conn:
        render_jobs.claim(conn, job.id, settings.job_stale_seconds, settings.job_max_attempts)
    prefix, bucket = render.job_prefix(job), settings.exports_bucket
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}{job.id}-1.jsonl", Body=b"{}\n"
    )  # a file, then the worker died
    s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}{job.id}-2.jsonl")
    query(
        stack.database_url,
        "UPDATE render_jobs SET attempts = %s, heartbeat_at = now() - interval '1 minute' WHERE id = %s "
        "RETURNING id",
        (settings.job_max_attempts, job.id),
    )
    assert render.sweep(settings, db, s3, celery_client[0])["failed"] == [job.id]
    assert load_job(db, tenant[0], job).status == "failed"
    assert leftovers(s3, settings, job) == ([], [])
