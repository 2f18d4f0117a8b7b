"""Pipeline delivery: latency of a READY pipeline under steady load, and backfill throughput.

`make bench BENCH=pipeline [ARGS="--seconds 20 --rate 400 --backfill 20000"]`

Starts a private Postgres (127.0.0.1, free port) and a pipeline runner in its own process with the
shipped defaults, then:
  1. latency: two writer threads store events the way the drain does (COPY + merge, one
     transaction per batch) at a steady rate; the time from each commit to the events' arrival at
     a local HTTP receiver is measured. Floor, same run: commit -> NOTIFY received by a listener,
     plus one bare POST of the same size to the same receiver.
  2. backfill: N stored events delivered from scratch by a new pipeline (batches of 500 over http).
     Floor: the same events read with one query and POSTed in the same batches by a bare loop.
"""

import argparse
import json
import multiprocessing
import select
import statistics
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import urllib3

from devtools import devstack
from services import tenancy
from services.control import pipeline_rows
from services.database import Database
from services.event_writer import write_envelopes
from services.settings import WorkerSettings


class Receiver:
    """Records when each (batch uuid) first arrives, and how many events came."""

    def __init__(self):
        self.first_seen: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.time()
                events = json.loads(body)
                with receiver.lock:
                    receiver.count += len(events)
                    for e in events:
                        receiver.first_seen.setdefault(e.get("batch"), now)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _run_runner(database_url: str, stop):
    from services.worker.runner import Runner

    settings = WorkerSettings(database_url=database_url, redis_url="unused")
    Runner(settings, name="bench").run(stop)


def envelope(app_id, n):
    return {
        "kind": "barchart",
        "app_id": app_id,
        "batch": str(uuid.uuid4()),
        "first_sequence": 0,
        "received_ms": int(time.time() * 1000),
        "events": [
            {
                "customer": "ACME",
                "product": "WEB",
                "type": "LOGIN",
                "timestamp": 1700000000000 + i,
                "context": ["bench"],
            }
            for i in range(n)
        ],
    }


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def new_pipeline(db, app_id, url) -> str:
    with db.connection() as conn:
        connector = pipeline_rows.create_connector(
            conn,
            app_id,
            "http",
            {"url": url, "headers": {}, "batching": {"maxItems": None, "flushInterval": 0}},
        )
        return str(pipeline_rows.create_pipeline(conn, app_id, "events", str(connector["id"]))["id"])


def label(db, pipeline_id) -> str:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT label FROM pipelines WHERE id = %s", (pipeline_id,))
        return cur.fetchone()[0]


def floor_notify(url: str, samples: int = 200) -> list[float]:
    """Commit of an insert -> a LISTENing connection has the notification."""
    listener = psycopg2.connect(url)
    listener.autocommit = True
    listener.cursor().execute("LISTEN bench_floor")
    writer = psycopg2.connect(url)
    out = []
    for _ in range(samples):
        with writer, writer.cursor() as cur:
            cur.execute("SELECT pg_notify('bench_floor', 'x')")
        t0 = time.perf_counter()
        while True:
            listener.poll()
            if listener.notifies:
                listener.notifies.clear()
                break
            select.select([listener], [], [], 1)
        out.append(time.perf_counter() - t0)
    listener.close()
    writer.close()
    return out


def floor_post(url: str, body: bytes, samples: int = 200) -> list[float]:
    pool = urllib3.PoolManager()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        pool.request("POST", url, body=body, headers={"Content-Type": "application/json"})
        out.append(time.perf_counter() - t0)
    return out


def latency(db, app_id, receiver, seconds: float, rate: int, per_txn: int = 10) -> list[float]:
    pipeline_id = new_pipeline(db, app_id, receiver.url)
    devstack.wait_until(lambda: label(db, pipeline_id) == "READY", 30, "pipeline READY")
    committed: dict[str, float] = {}
    stop_at = time.monotonic() + seconds
    interval = 2 * per_txn / rate  # two writers

    def writer():
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            env = envelope(app_id, per_txn)
            with db.connection() as conn:
                write_envelopes(conn, [env])
            committed[env["batch"]] = time.time()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    devstack.wait_until(lambda: all(b in receiver.first_seen for b in committed), 60, "all batches delivered")
    return [receiver.first_seen[b] - t for b, t in committed.items()]


def backfill(db, url, app_id, receiver, n: int) -> tuple[float, float]:
    """(pipeline seconds, floor seconds) to deliver n stored events over http."""
    for _ in range(n // 1000):
        with db.connection() as conn:
            write_envelopes(conn, [envelope(app_id, 1000)])
    # Floor: one query for all rows as JSON, POSTed in batches of 500 by a bare loop.
    pool = urllib3.PoolManager()
    t0 = time.perf_counter()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT json_build_object('id', id, 'batch', batch, 'sequence', sequence, 'customer', customer,
                           'product', product, 'type', type, 'timestamp', timestamp, 'context', context,
                           'receivedAt', received_at)::text FROM events WHERE app_id = %s ORDER BY xid, id""",
            (app_id,),
        )
        docs = [r[0] for r in cur.fetchall()]
    for i in range(0, len(docs), 500):
        pool.request(
            "POST",
            receiver.url,
            body=("[" + ",".join(docs[i : i + 500]) + "]").encode(),
            headers={"Content-Type": "application/json"},
        )
    floor = time.perf_counter() - t0
    before = receiver.count
    t0 = time.perf_counter()
    pipeline_id = new_pipeline(db, app_id, receiver.url)
    devstack.wait_until(lambda: label(db, pipeline_id) == "READY", 300, "backfill READY", interval=0.05)
    took = time.perf_counter() - t0
    assert receiver.count - before >= n, (receiver.count - before, n)
    return took, floor


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="bench pipeline")
    parser.add_argument("--seconds", type=float, default=20, help="steady load duration")
    parser.add_argument("--rate", type=int, default=400, help="events stored per second")
    parser.add_argument("--backfill", type=int, default=20000, help="events for the backfill run")
    args = parser.parse_args(argv)

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    runner = None
    with devstack.private_stack("sluice-bench-", moto=False, durable=True) as local:
        try:
            url = local.database_url
            db = Database(url, maxconn=8)
            with db.connection() as conn:
                org = tenancy.create_org(conn, "bench")
                latency_app, backfill_app = (
                    tenancy.create_app(conn, org, "latency"),
                    tenancy.create_app(conn, org, "fill"),
                )
            receiver = Receiver()
            runner = ctx.Process(target=_run_runner, args=(url, stop), daemon=True)
            runner.start()
            print(
                f"defaults: poll {WorkerSettings.variables()['SLUICE_PIPELINE_POLL_SECONDS']} s, "
                f"batch {WorkerSettings.variables()['SLUICE_PIPELINE_BATCH_SIZE']}; "
                "Postgres durable, 127.0.0.1"
            )

            body = (
                "["
                + ",".join(json.dumps({**envelope(0, 1)["events"][0], "batch": "x"}) for _ in range(10))
                + "]"
            ).encode()
            notify, post = floor_notify(url), floor_post(receiver.url, body)
            floor50 = statistics.median(notify) + statistics.median(post)
            floor99 = pct(notify, 99) + pct(post, 99)
            lat = latency(db, latency_app, receiver, args.seconds, args.rate)
            p50, p99, worst = pct(lat, 50), pct(lat, 99), max(lat)
            achieved = len(lat) * 10 / args.seconds
            print(
                f"latency, {len(lat)} transactions of 10 events for {args.seconds:.0f} s "
                f"({achieved:.0f} events/s stored; asked for {args.rate}):"
            )
            print(
                f"  commit -> destination  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
                f"max {worst * 1000:7.1f} ms"
                f"   (target p99 < 2000 ms: {'met' if p99 < 2 else 'MISSED'})"
            )
            print(f"  floor (NOTIFY + bare POST) p50 {floor50 * 1000:7.2f} ms  p99 {floor99 * 1000:7.2f} ms")
            print(f"  ratio p50 {p50 / floor50:6.1f}x   p99 {p99 / floor99:6.1f}x")

            took, floor = backfill(db, url, backfill_app, receiver, args.backfill)
            print(f"backfill, {args.backfill} events in batches of 500:")
            print(f"  pipeline {took:6.2f} s = {args.backfill / took:8.0f} events/s")
            print(
                f"  floor    {floor:6.2f} s = {args.backfill / floor:8.0f} events/s "
                "(one query, bare POST loop)"
            )
            print(f"  ratio {took / floor:5.2f}x the floor's time")
            db.close()
        finally:  # the runner goes before its Postgres does
            stop.set()
            if runner is not None:
                runner.join(10)
    return 0
