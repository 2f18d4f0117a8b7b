"""`make bench BENCH=drain`: events/s drained from a preloaded SQS queue into Postgres.

Producers send 1-event and 100-event requests; the queue holds them as the ingest API packs them
(`--requests-per-message` requests to a message, as a process serving that many at once does:
64 connections over 2 gunicorn processes make 32). Side by side, in one run, on private Postgres
and moto servers on 127.0.0.1, for each request size:
  floor 1  raw COPY of the same rows into the same table (events), one transaction per 10
           messages' rows, as many connections as a worker process has drain threads;
  floor 2  a raw boto3 receive(10) + delete_message_batch loop over the same queue, as many
           threads as a worker process has drain threads;
  drain    1, 2 and 4 worker processes, each running the Drainer threads exactly as the Celery
           DrainStep does. Processes start and connect first and wait on a gate, so Celery's
           boot time is not counted; the clock runs from opening the gate to the last row stored.

Every run uses fresh batch ids, so each stores new rows (no ON CONFLICT shortcut). Prints events/s
as the median and range of the runs, each drain's ratio to the slower floor of its request size
(the goal is >= 0.8), 1-event requests' events/s against 100-event requests' (the goal is >= 0.8),
and the CPU each component used during the drain runs (from /proc: Postgres with its backends,
the moto server, the drain processes, this process counting rows), to say what bounds the drain.
"""

import argparse
import io
import multiprocessing as mp
import os
import queue
import statistics
import threading
import time
import uuid

import psycopg2

from bench import timed_threads
from bench._cpu import Meter
from devtools import devstack
from services import aws, tenancy
from services.database import Database
from services.event_writer import _text_field
from services.settings import WorkerSettings
from shared import envelope

EVENT = {
    "customer": "BARCHART",
    "product": "PORTFOLIO",
    "type": "PORTFOLIO-APPLICATION-LOADED",
    "timestamp": 1568381886060,
    "context": ["watchlist", "quotes"],
}


def _bodies(app_id: int, events: int, per_request: int, per_message: int, received_ms: int) -> list[str]:
    """SQS bodies holding `events` events of `per_request`-event requests, `per_message` requests
    to a message (split where a message is full), as the ingest API packs them."""
    encoded = [envelope.encode_event(EVENT)] * per_request
    groups = [
        envelope.Group("barchart", app_id, str(uuid.uuid4()), 0, received_ms, encoded)
        for _ in range(events // per_request)
    ]
    return [
        body
        for start in range(0, len(groups), per_message)
        for body in envelope.pack_groups(groups[start : start + per_message], 262_144)
    ]


def _preload(sqs, url: str, bodies) -> None:
    for start in range(0, len(bodies), 10):
        answer = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
            ],
        )
        assert not answer.get("Failed"), answer["Failed"]


def _count(database_url: str, app_id: int) -> int:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE app_id = %s", (app_id,))
        return cur.fetchone()[0]


def floor_copy(database_url: str, bodies: list[str], threads: int) -> float:
    """Seconds to COPY the rows straight into events, 10 messages' rows per transaction."""
    received = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
    chunks: queue.Queue = queue.Queue()
    for start in range(0, len(bodies), 10):
        lines = []
        for body in bodies[start : start + 10]:
            for group in envelope.decode(body):
                for i, event in enumerate(group["events"]):
                    row = (
                        group["app_id"],
                        group["batch"],
                        group["first_sequence"] + i,
                        event["customer"],
                        event["product"],
                        event["type"],
                        event["timestamp"],
                        '["watchlist","quotes"]',
                        received,
                    )
                    lines.append("\t".join(map(_text_field, row)) + "\n")
        chunks.put("".join(lines))
    conns = [psycopg2.connect(database_url) for _ in range(threads)]
    pool: queue.Queue = queue.Queue()
    for c in conns:
        pool.put(c)

    def copy_loop():
        conn = pool.get()
        while True:
            try:
                text = chunks.get_nowait()
            except queue.Empty:
                return
            with conn, conn.cursor() as cur:
                cur.copy_expert(
                    "COPY events (app_id, batch, sequence, customer, product, type, timestamp, "
                    "context, received_at) FROM STDIN",
                    io.StringIO(text),
                )

    elapsed = timed_threads(threads, copy_loop)
    for c in conns:
        c.close()
    return elapsed


def floor_sqs(settings, url: str, total: int, threads: int) -> float:
    """Seconds for a bare receive + delete loop to empty the preloaded queue (until the last
    delete, not until every thread's last long poll has ended)."""
    done = {"n": 0, "at": 0.0}
    lock = threading.Lock()

    def loop():
        sqs = aws.client(settings, "sqs")
        while True:
            with lock:
                if done["n"] >= total:
                    return
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
                with lock:
                    done["n"] += len(messages)
                    done["at"] = time.perf_counter()

    started = time.perf_counter()
    timed_threads(threads, loop)
    return done["at"] - started


def _drain_process(settings, ready, gate, stop) -> None:
    from services.worker.drain import Drainer  # in the child, as the worker imports it

    db = Database(settings.database_url, maxconn=settings.drain_threads + 1)
    drainers = [Drainer(settings, db) for _ in range(settings.drain_threads)]
    db.ping()  # connect before the clock starts
    ready.release()
    gate.wait()
    threads = [threading.Thread(target=d.run, args=(stop,)) for d in drainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.close()


def drain(settings, app_id: int, expected: int, processes: int, servers: dict) -> tuple[float, dict]:
    """Seconds for `processes` drain processes to store `expected` rows of the preloaded queue, and
    the cores each component used meanwhile (servers: name -> root pids of the stand-ins)."""
    ctx = mp.get_context("spawn")
    ready, gate, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
    # Daemonic: an interrupted bench takes its drain processes down with it.
    procs = [
        ctx.Process(target=_drain_process, args=(settings, ready, gate, stop), daemon=True)
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=60):
            raise RuntimeError("drain process did not start")
    start_count = _count(settings.database_url, app_id)
    meter = Meter({**servers, "drain processes": [p.pid for p in procs]})
    meter.start()
    t0 = time.perf_counter()
    gate.set()
    while _count(settings.database_url, app_id) - start_count < expected:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    cores = meter.stop()
    stop.set()
    for p in procs:
        p.join(60)
    return elapsed, cores


def bound(cores: dict[str, float], machine: int, processes: int) -> str:
    """What limits the drain: the component nearest to the most CPU it can use (moto is one Python
    process, so one core; each drain process is held to about one core by its GIL; Postgres may
    use every core), and whether the machine's cores were all busy."""
    ceilings = {"moto server": 1, "postgres": machine, "drain processes": processes}
    nearest = max(ceilings, key=lambda name: cores[name] / ceilings[name])
    found = (
        f"{nearest}, at {100 * cores[nearest] / ceilings[nearest]:.0f}% of the "
        f"{ceilings[nearest]} core{'s' if ceilings[nearest] > 1 else ''} it can use"
    )
    total = sum(cores.values())
    if total >= 0.85 * machine:
        found += (
            f"; and the machine's {machine} cores were {100 * total / machine:.0f}% busy "
            f"({cores['other processes']:.2f} of them by other work)"
        )
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench BENCH=drain ARGS=...",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=32_000, help="events preloaded per run")
    parser.add_argument("--sizes", default="1,100", help="events per producer request, runs for each")
    parser.add_argument(
        "--requests-per-message", type=int, default=32, help="requests the ingest API packs into a message"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=WorkerSettings.variables()["SLUICE_DRAIN_THREADS"],
        help="drain threads per worker process (and floor concurrency)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per line (median and range)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="drain process counts")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]

    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    with devstack.private_stack("sluice-bench-", durable=True) as local:
        database_url, endpoint = local.database_url, local.aws_endpoint_url
        settings = WorkerSettings(
            database_url=database_url,
            aws_endpoint_url=endpoint,
            redis_url="redis://unused",
            drain_threads=args.threads,
            drain_wait_seconds=1,
            worker_metrics_port=0,
        )
        url = aws.provision(settings, visibility_timeout=60)["queue_url"]
        sqs = aws.client(settings, "sqs")
        servers = {"postgres": [local.procs["postgres"].pid], "moto server": [local.procs["moto"].pid]}

        def fresh(size: int) -> tuple[int, list[str]]:
            """A new app (so counting its rows stays cheap) and its preload, with new batch ids."""
            with psycopg2.connect(database_url) as conn:
                app_id = tenancy.create_app(
                    conn, tenancy.create_org(conn, f"bench-{uuid.uuid4().hex[:8]}"), "bench"
                )
            received_ms = int(time.time() * 1000)
            return app_id, _bodies(app_id, args.events, size, args.requests_per_message, received_ms)

        def copy_run(size):
            return lambda: (floor_copy(database_url, fresh(size)[1], args.threads), {})

        def sqs_run(size):
            def run():
                bodies = fresh(size)[1]
                _preload(sqs, url, bodies)
                return floor_sqs(settings, url, len(bodies), args.threads), {}

            return run

        def drain_run(size, n):
            def run():
                app_id, bodies = fresh(size)
                _preload(sqs, url, bodies)
                return drain(settings, app_id, args.events // size * size, n, servers)

            return run

        machine = os.cpu_count() or 1
        print(
            f"drain benchmark: {args.events} events per run in requests of {args.sizes} events, "
            f"{args.requests_per_message} requests to a message; median and range of {args.repeat} "
            f"interleaved runs; {args.threads} threads per worker process; {machine} cores",
            flush=True,
        )
        for size in sizes:
            messages = len(fresh(size)[1])
            print(f"  {size}-event requests: {messages} messages of {args.events / messages:.0f} events")
        runs = {}
        for size in sizes:
            runs[(size, "floor  raw COPY")] = copy_run(size)
            runs[(size, "floor  raw boto3 receive+delete")] = sqs_run(size)
            for n in args.processes:
                runs[(size, f"drain  {n} worker process{'es' if n > 1 else ''}")] = drain_run(size, n)
        rates: dict[tuple, list[float]] = {key: [] for key in runs}
        cpu: dict[tuple, list[dict]] = {key: [] for key in runs}
        for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits all alike
            for key, run in runs.items():
                seconds, cores = run()
                rates[key].append(args.events // key[0] * key[0] / seconds)
                cpu[key].append(cores)
        median = {key: statistics.median(r) for key, r in rates.items()}
        for (size, name), r in rates.items():
            floor = min(median[(size, "floor  raw COPY")], median[(size, "floor  raw boto3 receive+delete")])
            streams = f"{args.threads} streams" if name.startswith("floor") else f"x {args.threads} threads"
            ratio = f"= {median[(size, name)] / floor:.2f} x the slower floor" if "drain" in name else ""
            spread = f"({min(r):.0f}-{max(r):.0f})"
            rate = median[(size, name)]
            print(f"  {size:>3}-event {name:<34} {streams:<11} {rate:>7.0f} events/s {spread:<13} {ratio}")
        if 1 in sizes and 100 in sizes:
            for size, name in runs:
                if size == 1 and "drain" in name:
                    print(
                        f"  1-event / 100-event requests, {name[7:]}: "
                        f"{median[(1, name)] / median[(100, name)]:.2f}   (goal >= 0.80)"
                    )
        print("CPU during the drain runs, in cores (median of the runs):")
        for (size, name), samples in cpu.items():
            if samples and samples[0]:
                used = {part: statistics.median(s[part] for s in samples) for part in samples[0]}
                shown = ", ".join(f"{part} {value:.2f}" for part, value in used.items())
                print(f"  {size:>3}-event {name:<34} {shown}; total {sum(used.values()):.2f} of {machine}")
                processes = int(name.split()[1])
                print(f"  {'':<44} bound by {bound(used, machine, processes)}", flush=True)
        return 0
