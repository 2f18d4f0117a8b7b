"""POST /events throughput against its two floors, on 127.0.0.1, in one run.

    make bench BENCH=ingest [ARGS="--requests 3000 --concurrency 16"]

Three rounds send the same 100-event requests:
  bare   a Flask app that only parses the JSON, under the same gunicorn settings (deploy/gunicorn.conf.py)
  ingest the real ingest API (HTTP Basic key, validation, packing, SQS) under those settings
  boto3  a raw boto3 loop (a few threads) sending the envelope bodies of the same requests to the same
         moto queue, 10 to a SendMessageBatch call: the minimum number of SQS requests those bytes need
moto's send cost grows with queue depth, so every round runs in slices and the queue is purged
between slices (untimed). The ratios compare rounds of this run only.
"""

import argparse
import http.client
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from base64 import b64encode
from pathlib import Path

from bench import timed_threads
from devtools import devstack
from services import aws, tenancy
from services.database import Database
from services.settings import IngestSettings
from shared import envelope
from shared.enums import KeyScope

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def make_bodies(variants: int, per_request: int) -> list[bytes]:
    """Distinct 100-event requests, shaped like real product analytics events."""
    bodies = []
    for v in range(variants):
        events = [
            {
                "customer": f"CUSTOMER-{(v * 7 + i) % 40}",
                "product": ["PORTFOLIO", "WATCHLIST", "CHARTS"][i % 3],
                "type": f"PORTFOLIO-APPLICATION-{['LOADED', 'SAVED', 'SHARED', 'CLOSED'][i % 4]}",
                "timestamp": 1568381886060 + v * 1000 + i,
                "context": [f"user-{(v * 131 + i) % 9973}", f"session-{uuid.uuid4().hex[:12]}", "web"],
            }
            for i in range(per_request)
        ]
        bodies.append(json.dumps(events).encode())
    return bodies


def gunicorn(app: str, env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    port = devstack.free_port()
    cmd = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{port}", app]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
    )

    def healthy():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    devstack.wait_until(healthy, 60, app, proc)
    return proc, port


def run_http(
    port: int, bodies: list[bytes], count: int, concurrency: int, headers: dict
) -> tuple[float, list[float]]:
    """POST `count` requests with `concurrency` keep-alive connections; (seconds, latencies)."""
    latencies, errors, lock, next_index = [], [], threading.Lock(), iter(range(count))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            conn.request("POST", "/events", body=bodies[i % len(bodies)], headers=headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status != 200:
                errors.append(resp.status)

    seconds = timed_threads(concurrency, client)
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. HTTP {errors[0]}")
    return seconds, latencies


def run_boto3(sqs, url: str, messages: list[str], concurrency: int) -> tuple[float, list[float], int]:
    """Send the bodies 10 to a call, as a raw loop would; (seconds, latencies per call, calls)."""
    groups, group, size = [], [], 0
    for body in messages:  # the same grouping limits the ingest API uses: 10 entries, 256 KiB
        n = len(body.encode())
        if group and (len(group) == 10 or size + n > 262_144):
            groups.append(group)
            group, size = [], 0
        group.append(body)
        size += n
    groups.append(group)
    latencies, lock, it = [], threading.Lock(), iter(groups)

    def sender():
        while True:
            with lock:
                group = next(it, None)
            if group is None:
                return
            t0 = time.perf_counter()
            answer = sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(group)]
            )
            latencies.append(time.perf_counter() - t0)
            assert not answer.get("Failed"), answer["Failed"]

    return timed_threads(concurrency, sender), latencies, len(groups)


def sqs_requests_made(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return sum(float(v) for v in re.findall(r"^sluice_ingest_sqs_requests_total (\S+)$", text, re.M))


def empty_queue(sqs, settings) -> None:
    """Start the next slice on an empty queue (moto allows one PurgeQueue a minute; recreate it)."""
    sqs.delete_queue(QueueUrl=aws.queue_url(sqs, settings.events_queue))
    aws.provision(settings)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make bench BENCH=ingest")
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (100 events each)")
    parser.add_argument("--concurrency", type=int, default=64, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both HTTP rounds)")
    parser.add_argument("--threads", type=int, default=32, help="gunicorn threads per worker (both)")
    parser.add_argument("--boto3-threads", type=int, default=4, help="threads of the raw boto3 loop")
    parser.add_argument("--slice", type=int, default=100, help="requests between emptying the queue")
    parser.add_argument("--events-per-request", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.update(AWS_ENV)

    with devstack.private_stack("sluice-bench-") as local:
        db_url, moto_url, root = local.database_url, local.aws_endpoint_url, local.root
        db = Database(db_url, maxconn=1)
        with db.connection() as conn:
            app_id = tenancy.create_app(conn, tenancy.create_org(conn, "bench"), "bench")
            _, key = tenancy.create_key(conn, app_id, KeyScope.INGEST)
        db.close()
        settings = IngestSettings(
            database_url=db_url,
            aws_endpoint_url=moto_url,
            events_queue="bench-events",
            events_dlq="bench-events-dlq",
            exports_bucket="bench-exports",
        )
        queue_url = aws.provision(settings)["queue_url"]
        sqs = aws.client(settings, "sqs")
        env = {
            **os.environ,
            "SLUICE_DATABASE_URL": db_url,
            "SLUICE_AWS_ENDPOINT_URL": moto_url,
            "SLUICE_EVENTS_QUEUE": "bench-events",
            "PROMETHEUS_MULTIPROC_DIR": str(root / "prom"),
            "SLUICE_WEB_WORKERS": str(args.workers),
            "SLUICE_WEB_THREADS": str(args.threads),
        }
        (root / "prom").mkdir()

        bodies = make_bodies(50, args.events_per_request)
        headers = {
            "Content-Type": "application/json",
            "Authorization": "Basic " + b64encode(f"{app_id}:{key}".encode()).decode(),
        }
        slices = [min(args.slice, args.requests - s) for s in range(0, args.requests, args.slice)]
        events = args.requests * args.events_per_request
        print(
            f"{args.requests} requests x {args.events_per_request} events, {args.concurrency} connections, "
            f"gunicorn {args.workers} workers x {args.threads} threads (gthread), {os.cpu_count()} cores"
        )

        def http_round(app: str, name: str):
            proc, port = gunicorn(app, env, root / f"{name}.log")
            try:
                run_http(port, bodies, 2 * args.concurrency, args.concurrency, headers)  # warm up
                empty_queue(sqs, settings)
                before = sqs_requests_made(port) if name == "ingest" else 0
                total, lat = 0.0, []
                for n in slices:
                    seconds, latencies = run_http(port, bodies, n, args.concurrency, headers)
                    total, lat = total + seconds, lat + latencies
                    empty_queue(sqs, settings)
                made = sqs_requests_made(port) - before if name == "ingest" else 0
                return total, lat, made
            finally:
                devstack.stop(proc)

        bare = http_round("bench._bare_flask:create_app()", "bare")
        ingest = http_round("services.ingest.app:create_app()", "ingest")

        # The same requests' envelope bodies, as the ingest API packs them.
        messages = []
        for i in range(args.requests):
            evs = json.loads(bodies[i % len(bodies)])
            messages += envelope.pack(
                "barchart",
                app_id,
                str(uuid.uuid4()),
                evs,
                int(time.time() * 1000),
                settings.message_max_bytes,
            )
        raw_total, raw_lat, raw_calls = 0.0, [], 0
        per_slice = math.ceil(len(messages) / len(slices))
        for s in range(0, len(messages), per_slice):
            seconds, latencies, calls = run_boto3(
                sqs, queue_url, messages[s : s + per_slice], args.boto3_threads
            )
            raw_total, raw_lat, raw_calls = raw_total + seconds, raw_lat + latencies, raw_calls + calls
            empty_queue(sqs, settings)

        rate = {
            name: events / seconds
            for name, seconds in (("bare", bare[0]), ("ingest", ingest[0]), ("boto3", raw_total))
        }
        print(f"{'round':8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for name, lat in (("bare", bare[1]), ("ingest", ingest[1]), ("boto3", raw_lat)):
            unit = " (per SendMessageBatch call)" if name == "boto3" else " (per request)"
            print(f"{name:8} {rate[name]:10.0f} {pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f}{unit}")
        floor = min(rate["bare"], rate["boto3"])
        print(f"ingest / bare flask      = {rate['ingest'] / rate['bare']:.2f}")
        print(f"ingest / raw boto3       = {rate['ingest'] / rate['boto3']:.2f}")
        print(f"ingest / lower floor     = {rate['ingest'] / floor:.2f}   (goal >= 0.50)")
        made, minimum = ingest[2] * 1e6 / events, raw_calls * 1e6 / events
        print(
            f"SQS requests per 1M events: ingest {made:.0f}, minimum for the bytes {minimum:.0f} "
            f"({len(messages)} messages, {sum(len(m) for m in messages) / len(messages):.0f} B average)"
        )
        print(f"ingest SQS requests / minimum = {made / minimum:.2f}   (goal <= 1.20)")
        return 0
