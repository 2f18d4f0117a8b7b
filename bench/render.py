"""`make bench BENCH=render [ARGS="--rows 1000000"]`: reports and exports rendered into S3.

Side by side in one run, on a private Postgres and moto server on 127.0.0.1:
  raw COPY      the same `COPY (SELECT ...) TO STDOUT` the renderer runs, into a sink that drops it
  moto PUT      the same number of bytes uploaded to moto in the same part size (the stand-in's cost)
  report/export the real renderer (services.worker.render.run): COPY into a multipart upload
Each measurement runs in a child process, so its peak RSS is its own; a 4x smaller report shows
whether memory grows with the row count. Ratios are rows/s against raw COPY of the same rows.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

from devtools import devstack
from services import aws, render_jobs, tenancy
from services.database import Database
from services.settings import WorkerSettings
from services.worker import render

AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
T0 = 1_700_000_000_000


class _Drop:
    """Where raw COPY writes: counts rows, keeps nothing."""

    def __init__(self):
        self.rows = self.size = 0

    def write(self, row):
        self.rows += 1
        self.size += len(row)


def _child(mode: str, job_id: str) -> dict:
    settings = WorkerSettings.from_env()
    db = Database(settings.database_url, maxconn=2)
    s3 = aws.client(settings, "s3")
    started = time.perf_counter()
    if mode == "render":
        status = render.run(settings, db, s3, job_id)
        job = _load(db, job_id)
        rows, size = job.rows_written, sum(f.size_bytes for f in job.files)
        assert status == "done", status
    elif mode == "raw":
        sql, params = render._statement(settings, _load(db, job_id))
        sink = _Drop()
        render._copy_out(settings.database_url, sql, params, sink)
        rows, size = sink.rows, sink.size
    else:  # moto: upload `job_id` bytes (a number here) as parts of the renderer's size
        size, rows = int(job_id), 0
        part = b"x" * settings.render_part_bytes
        f = render.S3File(
            s3,
            settings.exports_bucket,
            f"bench/{uuid.uuid4()}",
            settings.render_part_bytes,
            "application/octet-stream",
        )
        for _ in range(size // len(part)):
            f.write(part)
        f.write(b"x" * (size % len(part)))
        f.close()
    return {"seconds": time.perf_counter() - started, "rows": rows, "bytes": size}


def _load(db, job_id) -> render_jobs.Job:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT app_id, kind FROM render_jobs WHERE id = %s", (job_id,))
        app_id, kind = cur.fetchone()
        return render_jobs.get(conn, app_id, kind, job_id)


def _measure(env, mode: str, arg: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "render", "--child", mode, arg], env=env, stdout=subprocess.PIPE
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({proc.returncode})")
    result = json.loads(out)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def _seed(database_url: str, rows: int) -> int:
    db = Database(database_url, maxconn=1)
    with db.connection() as conn:
        app_id = tenancy.create_app(conn, tenancy.create_org(conn, f"bench-{uuid.uuid4().hex[:6]}"), "bench")
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO events (app_id, batch, sequence, customer, product, type, timestamp,
                                               context, received_at)
                           SELECT %s, %s, g, 'ACME', 'PORTFOLIO', 'PORTFOLIO-APPLICATION-LOADED', %s + g,
                                  jsonb_build_array('session-' || (g %% 1000), 'eu-west'), now()
                           FROM generate_series(0, %s - 1) g""",
                (app_id, str(uuid.uuid4()), T0, rows),
            )
            cur.execute("ANALYZE events")
    db.close()
    return app_id


def _job(database_url, app_id, kind, job_filter=None) -> str:
    db = Database(database_url, maxconn=1)
    with db.connection() as conn:
        job_id = render_jobs.create(conn, app_id, kind, "Event", job_filter or {}).id
    db.close()
    return job_id


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="make bench BENCH=render", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median counts")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0

    os.environ.update(AWS_ENV)
    with devstack.private_stack("sluice-bench-") as local:
        db_url, moto_url = local.database_url, local.aws_endpoint_url
        settings = WorkerSettings(
            database_url=db_url,
            aws_endpoint_url=moto_url,
            redis_url="redis://unused",
            exports_bucket="bench-exports",
        )
        aws.provision(settings)
        env = {
            **os.environ,
            "SLUICE_DATABASE_URL": db_url,
            "SLUICE_AWS_ENDPOINT_URL": moto_url,
            "SLUICE_REDIS_URL": "redis://unused",
            "SLUICE_EXPORTS_BUCKET": "bench-exports",
        }

        print(f"seeding {args.rows:,} events ...", flush=True)
        app_id = _seed(db_url, args.rows)

        def median(label, mode, make_arg):
            """The median of --repeat runs (the machine is shared); peak RSS is the largest seen."""
            runs = sorted(
                (_measure(env, mode, make_arg()) for _ in range(args.repeat)), key=lambda x: x["seconds"]
            )
            r = {**runs[len(runs) // 2], "peak_rss_mib": max(x["peak_rss_mib"] for x in runs)}
            print(
                f"  {label:30} {r['rows']:>9,} rows {r['seconds']:7.2f} s "
                f"(median of {args.repeat}, {runs[0]['seconds']:.2f}-{runs[-1]['seconds']:.2f} s)",
                flush=True,
            )
            return label, r

        quarter = {"end": T0 + args.rows // 4}
        raw_report, raw_export, raw_quarter = (
            _job(db_url, app_id, kind, f)
            for kind, f in (("report", None), ("export", None), ("report", quarter))
        )
        rows = [  # (label, measurement, the raw COPY it is compared with)
            median("raw COPY, report rows", "raw", lambda: raw_report),
            median("report (CSV) to S3", "render", lambda: _job(db_url, app_id, "report")),
        ]
        rows.insert(1, median("moto PUT of the report bytes", "moto", lambda: str(rows[1][1]["bytes"])))
        with Database(db_url, maxconn=1).connection() as conn, conn.cursor() as cur:
            # Raw COPY only reads the job's statement; out of the open state it no longer blocks new exports.
            cur.execute("UPDATE render_jobs SET status = 'failed' WHERE id = %s", (raw_export,))
        rows += [
            median("raw COPY, export rows", "raw", lambda: raw_export),
            median("export (JSON Lines) to S3", "render", lambda: _job(db_url, app_id, "export")),
            median("raw COPY, 1/4 of report rows", "raw", lambda: raw_quarter),
            median("report, 1/4 of the rows", "render", lambda: _job(db_url, app_id, "report", quarter)),
        ]
        floors = {
            "report (CSV) to S3": rows[0][1],
            "export (JSON Lines) to S3": rows[3][1],
            "report, 1/4 of the rows": rows[5][1],
        }

        print(
            f"\n{'what':32} {'rows':>10} {'MB':>7} {'seconds':>8} {'rows/s':>10} {'vs raw COPY':>12} "
            f"{'peak RSS MiB':>13}"
        )
        for label, r in rows:
            rate = r["rows"] / r["seconds"] if r["rows"] else 0
            floor = floors.get(label)
            ratio = f"{rate / (floor['rows'] / floor['seconds']):.2f}x" if floor else "-"
            print(
                f"{label:32} {r['rows']:>10,} {r['bytes'] / 1e6:>7.1f} {r['seconds']:>8.2f} "
                f"{rate:>10,.0f} {ratio:>12} {r['peak_rss_mib']:>13.1f}"
            )
        full, small = rows[2][1], rows[6][1]
        print(
            f"\npeak RSS of the renderer: {full['peak_rss_mib']:.1f} MiB for {full['rows']:,} rows, "
            f"{small['peak_rss_mib']:.1f} MiB for {small['rows']:,} rows "
            f"(x{full['peak_rss_mib'] / small['peak_rss_mib']:.2f} "
            f"for x{full['rows'] / max(small['rows'], 1):.0f} rows); goal: at least 0.6x raw COPY"
        )
        return 0
