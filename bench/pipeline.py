"""Pipeline delivery: latency of a READY pipeline under steady load, backfill throughput, and how
little one hanging destination slows everyone else's pipelines.

`make bench BENCH=pipeline [ARGS="--seconds 20 --rate 400 --backfill 20000 --pipelines 8 --only isolation"]`

Starts a private Postgres (127.0.0.1, free port) and a pipeline runner in its own process with the
shipped defaults, then:
  1. latency: two writer threads store events the way the drain does (COPY + merge, one
     transaction per batch) at a steady rate; the time from each commit to the events' arrival at
     a local HTTP receiver is measured. Floor, same run: commit -> NOTIFY received by a listener,
     plus one bare POST of the same size to the same receiver.
  2. backfill (three times): N stored events delivered from scratch by a new pipeline (batches of
     500 over http).
     Floor: the same events read with one query and POSTed in the same batches by a bare loop.
  3. isolation: P READY pipelines of P apps under the same steady load, first alone, then with
     another app's pipeline whose destination takes the request and never answers (held until the
     delivery deadline, then retried). p99 of the healthy pipelines' commit -> destination latency,
     with the hanging one against without; the goal is at most 2x.
"""

import argparse
import itertools
import json
import multiprocessing
import select
import socket
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


class Hanging:
    """A destination that accepts every connection, takes the request, and never answers."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/in"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self.held.append(conn)

    def close(self):
        self.server.close()
        for conn in self.held:
            conn.close()


def _run_runner(database_url: str, stop):
    from services.worker.runner import Runner

    # The shipped defaults, with loopback allowed as `make run` does: the receivers are local.
    settings = WorkerSettings(
        database_url=database_url, redis_url="unused", connector_allowed_networks="127.0.0.0/8"
    )
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


def steady_load(db, app_ids, receiver, seconds: float, rate: int, per_txn: int = 10) -> list[float]:
    """Store `rate` events/s for `seconds`, one app after another, and return each transaction's
    commit -> arrival time at the receiver."""
    committed: dict[str, float] = {}
    stop_at = time.monotonic() + seconds
    interval = 2 * per_txn / rate  # two writers
    apps = itertools.cycle(app_ids)

    def writer():
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            env = envelope(next(apps), per_txn)
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


def ready_pipelines(db, app_ids, url) -> list[str]:
    pipelines = [new_pipeline(db, app_id, url) for app_id in app_ids]
    devstack.wait_until(lambda: all(label(db, p) == "READY" for p in pipelines), 30, "pipelines READY")
    return pipelines


def latency(db, app_id, receiver, seconds: float, rate: int) -> list[float]:
    ready_pipelines(db, [app_id], receiver.url)
    return steady_load(db, [app_id], receiver, seconds, rate)


def isolation(
    db, org, receiver, seconds: float, rate: int, pipelines: int
) -> tuple[list[float], list[float]]:
    """Healthy pipelines' latencies: alone, then with another app's destination hanging."""
    with db.connection() as conn:
        healthy = [tenancy.create_app(conn, org, f"healthy-{i}") for i in range(pipelines)]
        hostile = tenancy.create_app(conn, org, "hostile")
    ready_pipelines(db, healthy, receiver.url)
    alone = steady_load(db, healthy, receiver, seconds, rate)
    hanging = Hanging()
    with db.connection() as conn:
        write_envelopes(conn, [envelope(hostile, 10)])
    new_pipeline(db, hostile, hanging.url)
    devstack.wait_until(lambda: hanging.held, 30, "a delivery hanging")
    beside = steady_load(db, healthy, receiver, seconds, rate)
    hanging.close()
    return alone, beside


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
    devstack.wait_until(lambda: label(db, pipeline_id) == "READY", 300, "backfill READY", interval=0.01)
    took = time.perf_counter() - t0
    assert receiver.count - before >= n, (receiver.count - before, n)
    return took, floor


def print_latency(db, url, app_id, receiver, args) -> None:
    body = (
        "[" + ",".join(json.dumps({**envelope(0, 1)["events"][0], "batch": "x"}) for _ in range(10)) + "]"
    ).encode()
    notify, post = floor_notify(url), floor_post(receiver.url, body)
    floor50 = statistics.median(notify) + statistics.median(post)
    floor99 = pct(notify, 99) + pct(post, 99)
    lat = latency(db, app_id, receiver, args.seconds, args.rate)
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


def print_backfill(db, url, org, receiver, args) -> None:
    """`--repeat` backfills, each of a new app's events and each with its own floor."""
    runs = []
    for i in range(args.repeat):
        with db.connection() as conn:
            app_id = tenancy.create_app(conn, org, f"fill-{i}")
        runs.append(backfill(db, url, app_id, receiver, args.backfill))
    took = statistics.median(t for t, _ in runs)
    floor = statistics.median(f for _, f in runs)
    speeds = sorted(f / t for t, f in runs)
    print(f"backfill, {args.backfill} events in batches of 500, median of {len(runs)} runs:")
    print(f"  pipeline {took:6.2f} s = {args.backfill / took:8.0f} events/s")
    print(f"  floor    {floor:6.2f} s = {args.backfill / floor:8.0f} events/s (one query, bare POST loop)")
    print(
        f"  speed against the floor's, each run against its own floor: {statistics.median(speeds):4.2f}x "
        f"({speeds[0]:.2f}-{speeds[-1]:.2f})   (goal >= 0.5x)"
    )


def print_isolation(db, org, receiver, args) -> None:
    alone, beside = isolation(db, org, receiver, args.seconds, args.rate, args.pipelines)
    print(f"isolation, {args.pipelines} healthy pipelines of {args.pipelines} apps, {args.rate} events/s:")
    for name, lat in (("alone", alone), ("one hanging", beside)):
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        print(f"  {name:12} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({len(lat)} transactions)")
    ratio = pct(beside, 99) / pct(alone, 99)
    print(f"  ratio p99 {ratio:5.2f}x   (goal at most 2x: {'met' if ratio <= 2 else 'MISSED'})")


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="bench pipeline")
    parser.add_argument("--seconds", type=float, default=20, help="steady load duration")
    parser.add_argument("--rate", type=int, default=400, help="events stored per second")
    parser.add_argument("--backfill", type=int, default=20000, help="events for the backfill run")
    parser.add_argument("--repeat", type=int, default=3, help="backfill runs (median and range)")
    parser.add_argument("--pipelines", type=int, default=8, help="healthy pipelines in the isolation run")
    parser.add_argument("--only", choices=("latency", "backfill", "isolation"), help="run one part")
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
                latency_app = tenancy.create_app(conn, org, "latency")
            receiver = Receiver()
            runner = ctx.Process(target=_run_runner, args=(url, stop), daemon=True)
            runner.start()
            defaults = WorkerSettings.variables()
            print(
                f"defaults: poll {defaults['SLUICE_PIPELINE_POLL_SECONDS']} s, "
                f"batch {defaults['SLUICE_PIPELINE_BATCH_SIZE']}, "
                f"senders {defaults['SLUICE_PIPELINE_SENDERS']}, "
                f"deadline {defaults['SLUICE_PIPELINE_DEADLINE_SECONDS']} s; Postgres durable, 127.0.0.1"
            )
            if args.only in (None, "latency"):
                print_latency(db, url, latency_app, receiver, args)
            if args.only in (None, "backfill"):
                print_backfill(db, url, org, receiver, args)
            if args.only in (None, "isolation"):
                print_isolation(db, org, receiver, args)
            db.close()
        finally:  # the runner goes before its Postgres does
            stop.set()
            if runner is not None:
                runner.join(10)
    return 0
