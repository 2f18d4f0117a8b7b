"""`make bench BENCH=chaos`: the trio under real faults, every event counted.

On this machine: private Postgres, Redis and moto server (devtools/devstack.py), the ingest and
control APIs under gunicorn and `celery worker` processes, as `make run` starts them. Producers
post Barchart events, each carrying a unique id in its `context`, and retry whatever was not
answered 200 the way a careful producer does: the same body with the same Idempotency-Key header,
after the Retry-After the answer named (or half a second when the connection failed). Each fault
runs on an app of its own and prints:

  accepted    events of requests answered 200
  stored      those events found in Postgres (by id)
  duplicated  stored rows beyond one per id: the same event stored under a second batch id because
              a retry was not recognised (rows are unique on (app, batch, sequence) by construction)
  lost        accepted events never stored

The faults:
  1 kill workers   a worker's processes SIGKILLed 10 times while the events flow (2 workers,
                   each restarted at once); --events of them (default 100,000; --quick 10,000)
  2 Postgres down  Postgres stopped (fast shutdown) for --postgres-seconds mid-flow, then started
  3 SQS down       the SQS stand-in frozen (SIGSTOP) for --sqs-seconds, then resumed: it keeps its
                   messages, as SQS does through an outage, while nothing gets an answer
  4 SIGTERM APIs   SIGTERM to ingest and then to control while both are under load, each started
                   again once it exited; requests in flight must finish, none may get a 5xx

Goal: 0 lost and 0 duplicated in every row. Ctrl-C or SIGTERM stops everything the bench started.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from collections import Counter
from pathlib import Path

import psycopg2
import requests

from devtools import devstack
from services import aws, tenancy
from services.settings import CommonSettings
from services.status import queue_depth
from shared.enums import KeyScope

ROOT = Path(__file__).resolve().parents[1]
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
PER_REQUEST = 100
GIVE_UP_SECONDS = 300  # a producer that cannot get a 200 for this long stops retrying that request


# --- the processes ---------------------------------------------------------------------------------


class Process:
    """One Sluice process in a session of its own, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_dir: Path, port: int | None = None):
        self.name, self.cmd, self.env, self.log_dir, self.port = name, cmd, env, log_dir, port
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.log_dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.port:
            devstack.wait_until(lambda: _answers(self.port), 60, self.name, self.proc)

    def kill(self) -> None:
        """SIGKILL to every process of it, as when its pod or machine dies; wait until they are gone."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM to its main process only, as Kubernetes sends it; wait until it has exited."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def stop(self) -> None:
        if self.proc is not None:
            devstack.stop(self.proc, timeout=30)


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Trio:
    """Ingest, control and the workers on one private stack; stop() ends every process it started."""

    def __init__(self, local, log_dir: Path):
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            **AWS_ENV,
            "SLUICE_DATABASE_URL": local.database_url,
            "SLUICE_REDIS_URL": local.redis_url,
            "SLUICE_AWS_ENDPOINT_URL": local.aws_endpoint_url,
            "SLUICE_DRAIN_WAIT_SECONDS": "1",
            "SLUICE_WORKER_METRICS_PORT": "0",
        }
        self.processes: list[Process] = []

    def api(self, service: str) -> Process:
        port = devstack.free_port()
        return self._add(Process(service, devstack.api_command(service, port), self.env, self.log_dir, port))

    def worker(self, n: int) -> Process:
        cmd = devstack.celery_command("worker", "-c", "1", "-n", f"chaos{n}@%h")
        return self._add(Process(f"worker{n}", cmd, self.env, self.log_dir))

    def _add(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


# --- producers -------------------------------------------------------------------------------------


class Producers:
    """Threads posting events to ingest, each retrying a request until it is answered 200."""

    def __init__(self, ingest: Process, app_id: int, key: str, name: str, threads: int = 8):
        self.ingest, self.auth, self.name = ingest, (str(app_id), key), name
        self.threads = threads
        self.accepted: set[str] = set()
        self.answers: Counter = Counter()  # status code or error name -> count
        self.gave_up = 0
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()

    def run(self, events: int, rate: float | None = None) -> None:
        """Post `events` events (all at once, or paced at `rate` events/s); return when all are done."""
        requests_total = -(-events // PER_REQUEST)
        started = time.monotonic()

        def loop():
            while not self._stop.is_set():
                with self._lock:
                    n = self._next
                    self._next += 1
                if n >= requests_total:
                    return
                if rate:  # request n is due when the pace says so
                    wait = started + n * PER_REQUEST / rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                size = min(PER_REQUEST, events - n * PER_REQUEST)
                self.post([f"{self.name}-{n}-{i}" for i in range(size)])

        workers = [threading.Thread(target=loop, daemon=True) for _ in range(self.threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    def stop(self) -> None:
        self._stop.set()

    def post(self, ids: list[str]) -> None:
        now = int(time.time() * 1000)
        event = {"customer": "CHAOS", "product": self.name, "type": "E", "timestamp": now}
        body = [{**event, "context": [i]} for i in ids]
        url = f"http://127.0.0.1:{self.ingest.port}/events"
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        give_up = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < give_up and not self._stop.is_set():
            try:
                # A connection of its own per request: no kept-alive connection races a shutdown.
                answer = requests.post(url, json=body, auth=self.auth, headers=headers, timeout=30)
            except requests.RequestException as exc:
                self._count(_error_name(exc))
                time.sleep(0.5)
                continue
            self._count(answer.status_code)
            if answer.status_code == 200:
                with self._lock:
                    self.accepted.update(ids)
                return
            time.sleep(min(10.0, float(answer.headers.get("Retry-After", 1))))
        with self._lock:
            self.gave_up += 1

    def _count(self, what) -> None:
        with self._lock:
            self.answers[what] += 1


def _error_name(exc: Exception) -> str:
    """How a request failed without an answer, from the producer's side.

    refused: nothing listened on the port. reset: the connection was closed unanswered; at a
    shutdown those are connections still in the listen backlog, which the app never received
    (gunicorn answers every request it accepted before it exits). Anything else by its type.
    """
    text = repr(exc)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "refused"
    if any(word in text for word in ("ConnectionResetError", "RemoteDisconnected", "Connection aborted")):
        return "reset"
    return type(exc).__name__


class ControlLoad:
    """Threads reading the control API (GET /pipelines) until stopped; counts answers and errors."""

    def __init__(self, control: Process, app_id: int, key: str, threads: int = 4):
        self.control, self.auth = control, (str(app_id), key)
        self.answers: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{self.control.port}/pipelines", auth=self.auth, timeout=30
                )
                self.answers[answer.status_code] += 1
            except requests.RequestException as exc:
                self.answers[_error_name(exc)] += 1
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


# --- counting ---------------------------------------------------------------------------------------


def tenant(database_url: str, name: str) -> tuple[int, str]:
    with psycopg2.connect(database_url) as conn:
        org_id = tenancy.create_org(conn, f"chaos-{name}-{uuid.uuid4().hex[:6]}")
        app_id = tenancy.create_app(conn, org_id, name)
        _, key = tenancy.create_key(conn, app_id, KeyScope.ADMIN)  # fault 4 loads the control API too
    conn.close()
    return app_id, key


def stored_ids(database_url: str, app_id: int) -> Counter:
    """Event id -> stored rows carrying it."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT context->>0, count(*) FROM events WHERE app_id = %s GROUP BY 1", (app_id,))
        found = Counter(dict(cur.fetchall()))
    conn.close()
    return found


def settle(local, sqs, queue_url: str, app_id: int, accepted: set[str], timeout: float = 600) -> Counter:
    """Wait until every accepted event is stored and the queue is empty; return stored rows by id."""
    deadline = time.monotonic() + timeout
    while True:
        found = stored_ids(local.database_url, app_id)
        depth = queue_depth(sqs, queue_url)
        drained = depth == {"visible": 0, "in_flight": 0}
        if (accepted <= set(found) and drained) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def row(fault: str, producers: Producers, found: Counter, note: str) -> dict:
    accepted = producers.accepted
    if producers.gave_up:
        note += f"; {producers.gave_up} requests never answered 200 in {GIVE_UP_SECONDS} s"
    return {
        "fault": fault,
        "accepted": len(accepted),
        "stored": len(accepted & set(found)),
        "duplicated": sum(n - 1 for n in found.values()),
        "lost": len(accepted - set(found)),
        "note": note,
    }


def answers_note(answers: Counter) -> str:
    return "answers " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=lambda kv: str(kv[0])))


# --- the faults -----------------------------------------------------------------------------------


def paced(producers: Producers, rate: float, seconds: float) -> threading.Thread:
    """Producers posting `rate` events/s for `seconds`, in a thread of their own (started)."""
    # A daemon: a bench interrupted mid-flow must not wait for its producers' retries.
    sending = threading.Thread(
        target=producers.run, args=(int(rate * seconds),), kwargs={"rate": rate}, daemon=True
    )
    sending.start()
    return sending


def kill_workers(ctx, events: int, kills: int) -> dict:
    app_id, key = tenant(ctx.local.database_url, "kill")
    producers = Producers(ctx.ingest, app_id, key, "kill")
    sending = paced(producers, events / (kills * 4), kills * 4)
    for n in range(kills):
        time.sleep(3)
        victim = ctx.workers[n % len(ctx.workers)]
        victim.kill()
        victim.start()
    sending.join()
    found = settle(ctx.local, ctx.sqs, ctx.queue_url, app_id, producers.accepted)
    return row(f"1 worker SIGKILLed {kills}x", producers, found, answers_note(producers.answers))


def flowing(ctx, name: str, rate: float, seconds: float) -> tuple[int, Producers, threading.Thread]:
    """A fresh app and its producers posting `rate` events/s for `seconds`, 10 s under way."""
    app_id, key = tenant(ctx.local.database_url, name)
    producers = Producers(ctx.ingest, app_id, key, name)
    sending = paced(producers, rate, seconds)
    time.sleep(10)
    return app_id, producers, sending


def postgres_down(ctx, seconds: float, rate: float) -> dict:
    app_id, producers, sending = flowing(ctx, "postgres", rate, seconds + 20)
    port = int(ctx.local.database_url.rsplit(":", 1)[1].split("/")[0])
    before = Counter(producers.answers)
    devstack.stop(ctx.local.procs["postgres"])
    time.sleep(seconds)
    during = Counter(producers.answers) - before
    ctx.local.procs["postgres"], _ = devstack.start_postgres(ctx.local.root / "pg", port, durable=False)
    sending.join()
    found = settle(ctx.local, ctx.sqs, ctx.queue_url, app_id, producers.accepted)
    fault = f"2 Postgres stopped {seconds:.0f} s"
    return row(fault, producers, found, "while it was down " + answers_note(during))


def sqs_down(ctx, seconds: float, rate: float) -> dict:
    app_id, producers, sending = flowing(ctx, "sqs", rate, seconds + 20)
    moto = ctx.local.procs["moto"]
    os.killpg(moto.pid, signal.SIGSTOP)
    ctx.frozen = moto
    try:
        time.sleep(seconds)
    finally:
        os.killpg(moto.pid, signal.SIGCONT)
        ctx.frozen = None
    sending.join()
    found = settle(ctx.local, ctx.sqs, ctx.queue_url, app_id, producers.accepted)
    fault = f"3 SQS stand-in frozen {seconds:.0f} s"
    return row(fault, producers, found, answers_note(producers.answers))


def sigterm_apis(ctx, rate: float) -> dict:
    app_id, key = tenant(ctx.local.database_url, "sigterm")
    producers = Producers(ctx.ingest, app_id, key, "sigterm")
    reading = ControlLoad(ctx.control, app_id, key)
    sending = paced(producers, rate, 40)
    for api in (ctx.ingest, ctx.control):
        time.sleep(8)
        api.terminate()
        api.start()  # on the same port, as a replacement pod behind the same Service would
    sending.join()
    reading.stop()
    found = settle(ctx.local, ctx.sqs, ctx.queue_url, app_id, producers.accepted)
    both = producers.answers + reading.answers
    server_errors = sum(v for k, v in both.items() if isinstance(k, int) and k >= 500)
    return row(
        "4 SIGTERM to ingest, then control",
        producers,
        found,
        f"5xx {server_errors}; ingest {answers_note(producers.answers)}; "
        f"control {answers_note(reading.answers)}",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="make bench BENCH=chaos ARGS=...",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="10,000 events in fault 1 instead of 100,000")
    parser.add_argument("--events", type=int, default=None, help="events posted during fault 1")
    parser.add_argument("--kills", type=int, default=10, help="worker SIGKILLs in fault 1")
    parser.add_argument("--postgres-seconds", type=float, default=60)
    parser.add_argument("--sqs-seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=500, help="events/s posted during faults 2 to 4")
    parser.add_argument("--only", type=int, action="append", help="run only this fault (repeatable)")
    args = parser.parse_args(argv)
    events = args.events or (10_000 if args.quick else 100_000)
    faults = set(args.only or [1, 2, 3, 4])

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    os.environ.update(AWS_ENV)
    # The stack, the trio's processes, SQS, a process frozen right now, whether we were interrupted.
    ctx = types.SimpleNamespace(frozen=None, interrupted=False)
    rows = []
    with devstack.private_stack("sluice-chaos-", redis=True) as local:
        trio = Trio(local, local.root)
        try:
            ctx.local = local
            settings = CommonSettings(
                database_url=local.database_url, aws_endpoint_url=local.aws_endpoint_url
            )
            # Messages a killed worker held come back after 10 s rather than a minute.
            ctx.queue_url = aws.provision(settings, visibility_timeout=10)["queue_url"]
            ctx.sqs = aws.client(settings, "sqs")
            ctx.ingest, ctx.control = trio.api("ingest"), trio.api("control")
            ctx.workers = [trio.worker(1), trio.worker(2)]
            print(
                f"chaos: {events} events with {args.kills} worker kills; "
                f"Postgres down {args.postgres_seconds:.0f} s; SQS frozen {args.sqs_seconds:.0f} s; "
                f"SIGTERM to each API; {args.rate:.0f} events/s during 2-4; "
                f"logs in {local.root}",
                flush=True,
            )
            runs = {
                1: lambda: kill_workers(ctx, events, args.kills),
                2: lambda: postgres_down(ctx, args.postgres_seconds, args.rate),
                3: lambda: sqs_down(ctx, args.sqs_seconds, args.rate),
                4: lambda: sigterm_apis(ctx, args.rate),
            }
            for n in sorted(faults):
                started = time.monotonic()
                rows.append(runs[n]())
                print(line(rows[-1], time.monotonic() - started), flush=True)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping everything the bench started", file=sys.stderr)
            ctx.interrupted = True
        finally:
            if ctx.frozen is not None:
                os.killpg(ctx.frozen.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            trio.stop()
    if ctx.interrupted:
        return 130
    met = rows and not any(r["lost"] or r["duplicated"] for r in rows)
    print(f"goal 0 lost and 0 duplicated: {'met' if met else 'NOT met'} in {len(rows)} faults")
    return 0


def line(r: dict, seconds: float) -> str:
    return (
        f"{r['fault']:<34} accepted {r['accepted']:>7}  stored {r['stored']:>7}  "
        f"duplicated {r['duplicated']:>4}  lost {r['lost']:>4}   ({seconds:.0f} s; {r['note']})"
    )
