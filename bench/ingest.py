"""POST /events throughput, SQS messages and calls, and latency against the floors, in one run.

    make bench BENCH=ingest [ARGS="--requests 3000 --sizes 1,10,100 --concurrency 64"]

For each request size (events per request), three rounds send the same requests:
  bare   a Flask app that only parses the JSON, under the same gunicorn settings (deploy/gunicorn.conf.py)
  ingest the real ingest API (HTTP Basic key, validation, packing, SQS) under those settings,
         its slices alternating with bare's, so that load from elsewhere hits both alike
  boto3  a raw boto3 loop (a few threads) sending the same events packed into full messages
         (SLUICE_MESSAGE_MAX_BYTES each), 10 to a SendMessageBatch call within SQS's 256 KiB: the
         fewest messages and calls those bytes need
Then a lone sequential producer (one connection, 1-event requests) against one raw SendMessageBatch
round trip of one such message. moto's send cost grows with queue depth, so rounds run in slices
and the queue is recreated between slices (untimed). The ratios compare rounds of this run only.

Packing is bounded by concurrency: a process packs only the requests it is serving at once, so a
call carries at most `concurrency / workers` requests. The "aware" minimum counts that bound.
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
from typing import NamedTuple

from bench import timed_threads
from devtools import devstack
from services import aws, tenancy
from services.database import Database
from services.ingest.queue import MAX_ENTRIES, MIN_CALL_BYTES
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
    """Distinct requests of `per_request` events, shaped like real product analytics events."""
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

    try:
        devstack.wait_until(healthy, 60, app, proc)
    except BaseException:  # failed or interrupted: it has its own session, so stop it here
        devstack.stop(proc)
        raise
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


def calls_for(messages: list[str]) -> list[list[str]]:
    """Messages grouped into SendMessageBatch calls: 10 entries and 256 KiB at most each."""
    calls: list[list[str]] = [[]]
    size = 0
    for body in messages:
        n = len(body.encode())
        if calls[-1] and (len(calls[-1]) == MAX_ENTRIES or size + n > MIN_CALL_BYTES):
            calls.append([])
            size = 0
        calls[-1].append(body)
        size += n
    return calls


def run_boto3(sqs, url: str, calls: list[list[str]], concurrency: int) -> tuple[float, list[float]]:
    """Send the calls, as a raw loop would; (seconds, latencies per call)."""
    latencies, lock, it = [], threading.Lock(), iter(calls)

    def sender():
        while True:
            with lock:
                call = next(it, None)
            if call is None:
                return
            t0 = time.perf_counter()
            answer = sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(call)]
            )
            latencies.append(time.perf_counter() - t0)
            assert not answer.get("Failed"), answer["Failed"]

    return timed_threads(concurrency, sender), latencies


def sqs_counts(port: int) -> tuple[float, float]:
    """(SendMessageBatch calls, messages) the ingest processes have made so far."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name} (\S+)$", text, re.M))

    return total("sluice_ingest_sqs_requests_total"), total("sluice_ingest_sqs_entries_per_call_sum")


def empty_queue(sqs, settings) -> None:
    """Start the next slice on an empty queue (moto allows one PurgeQueue a minute; recreate it)."""
    sqs.delete_queue(QueueUrl=aws.queue_url(sqs, settings.events_queue))
    aws.provision(settings)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Round(NamedTuple):
    seconds: float
    latencies: list[float]
    calls: float = 0
    messages: float = 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make bench BENCH=ingest")
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--sizes", default="1,10,100", help="events per request, one round each")
    parser.add_argument("--concurrency", type=int, default=64, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both HTTP rounds)")
    parser.add_argument("--threads", type=int, default=32, help="gunicorn threads per worker (both)")
    parser.add_argument("--boto3-threads", type=int, default=4, help="threads of the raw boto3 loop")
    parser.add_argument("--slice", type=int, default=1000, help="requests between emptying the queue")
    parser.add_argument("--lone", type=int, default=300, help="requests of the lone sequential producer")
    args = parser.parse_args(argv)
    os.environ.update(AWS_ENV)
    sizes = [int(n) for n in args.sizes.split(",")]

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
        headers = {
            "Content-Type": "application/json",
            "Authorization": "Basic " + b64encode(f"{app_id}:{key}".encode()).decode(),
        }
        slices = [min(args.slice, args.requests - s) for s in range(0, args.requests, args.slice)]
        bodies = {size: make_bodies(50, size) for size in {*sizes, 1}}  # 1: the lone producer
        print(
            f"{args.requests} requests per round, {args.concurrency} connections, gunicorn {args.workers} "
            f"workers x {args.threads} threads (gthread), {os.cpu_count()} cores",
            flush=True,
        )

        # Both servers run side by side and their slices alternate, so that load from elsewhere on
        # this shared machine hits the floor and the ingest API alike.
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            servers["bare"] = gunicorn("bench._bare_flask:create_app()", env, root / "bare.log")
            servers["ingest"] = gunicorn("services.ingest.app:create_app()", env, root / "ingest.log")
            ingest_port = servers["ingest"][1]
            bare, ingest = {}, {}
            for size in sizes:
                for _, port in servers.values():
                    run_http(port, bodies[size], 2 * args.concurrency, args.concurrency, headers)  # warm up
                empty_queue(sqs, settings)
                before = sqs_counts(ingest_port)
                totals: dict[str, tuple[float, list[float]]] = {name: (0.0, []) for name in servers}
                for n in slices:
                    for name, (_, port) in servers.items():
                        seconds, latencies = run_http(port, bodies[size], n, args.concurrency, headers)
                        totals[name] = (totals[name][0] + seconds, totals[name][1] + latencies)
                    empty_queue(sqs, settings)
                after = sqs_counts(ingest_port)
                bare[size] = Round(*totals["bare"])
                ingest[size] = Round(*totals["ingest"], after[0] - before[0], after[1] - before[1])
            _, lone_latencies = run_http(ingest_port, bodies[1], args.lone, 1, headers)
            empty_queue(sqs, settings)
        finally:
            for proc, _ in servers.values():
                devstack.stop(proc)

        in_flight = math.ceil(args.concurrency / args.workers)  # requests one process serves at once
        for size in sizes:
            # The same requests' events, packed as full as the bytes allow, and the calls they need.
            groups = [
                envelope.Group("barchart", app_id, str(uuid.uuid4()), 0, int(time.time() * 1000), encoded)
                for i in range(args.requests)
                for encoded in [envelope.encode_events(json.loads(bodies[size][i % len(bodies[size])]))]
            ]
            messages = envelope.pack_groups(groups, settings.message_max_bytes)
            calls = calls_for(messages)
            raw_total, raw_lat = 0.0, []
            per_slice = math.ceil(len(calls) / len(slices))
            for start in range(0, len(calls), per_slice):
                chunk = calls[start : start + per_slice]
                seconds, latencies = run_boto3(sqs, queue_url, chunk, args.boto3_threads)
                raw_total, raw_lat = raw_total + seconds, raw_lat + latencies
                empty_queue(sqs, settings)
            raw = Round(raw_total, raw_lat)
            report(size, args.requests, bare[size], ingest[size], raw, messages, calls, in_flight)

        # One raw round trip: a 1-event request's message, sent alone, one call after another.
        [one] = envelope.pack("barchart", app_id, str(uuid.uuid4()), json.loads(bodies[1][0]), 0, 262_144)
        _, raw_one = run_boto3(sqs, queue_url, [[one]] * args.lone, 1)
        empty_queue(sqs, settings)
        print(
            f"\nlone sequential producer, 1-event requests: p50 {pct(lone_latencies, 0.5):.1f} ms, "
            f"p99 {pct(lone_latencies, 0.99):.1f} ms; one raw SendMessageBatch p50 {pct(raw_one, 0.5):.1f} ms"
            f" -> {pct(lone_latencies, 0.5) / pct(raw_one, 0.5):.2f}x   (goal <= 2.00)"
        )
        return 0


def report(size, requests, bare: Round, ingest: Round, raw: Round, messages, calls, in_flight) -> None:
    events = requests * size
    rate = {"bare": events / bare.seconds, "ingest": events / ingest.seconds, "boto3": events / raw.seconds}
    full = sum(map(len, messages)) / 1e6
    print(f"\n{size} events per request ({events} events, {full:.2f} MB as full messages)")
    print(f"  {'round':8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, lat in (("bare", bare.latencies), ("ingest", ingest.latencies), ("boto3", raw.latencies)):
        unit = " (per SendMessageBatch call)" if name == "boto3" else " (per request)"
        print(f"  {name:8} {rate[name]:10.0f} {pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f}{unit}")
    floor = min(rate["bare"], rate["boto3"])
    print(
        f"  ingest / bare flask = {rate['ingest'] / rate['bare']:.2f}, ingest / raw boto3 = "
        f"{rate['ingest'] / rate['boto3']:.2f}, ingest / lower floor = {rate['ingest'] / floor:.2f}"
        "   (goal >= 0.50)"
    )
    # However full, a message (and a call) holds only requests one process serves at the same time.
    aware = math.ceil(requests / in_flight)
    counts = (("messages", ingest.messages, len(messages)), ("calls", ingest.calls, len(calls)))
    for what, made, naive in counts:
        print(
            f"  SQS {what}: ingest {made:.0f}, minimum for the bytes {naive} -> {made / naive:.2f}x"
            " (goal <= 1.20); "
            f"aware of {in_flight} requests in flight per process {max(naive, aware)} "
            f"-> {made / max(naive, aware):.2f}x"
        )
