"""Local stand-ins for production dependencies: Postgres, Redis and moto server (SQS, S3).

`make run` and the test suite both start their dependencies through here, as real processes.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen | None = None, interval: float = 0.1):
    """Poll `check` until it returns truthy (and return that), the deadline passes, or `proc` exits."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last: {value!r})")


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # Postgres refuses to run as root; the Debian package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (scripts/bootstrap.sh does)")
    return path


def can_connect(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


def start_postgres(data_dir: Path, port: int, durable: bool = True) -> tuple[subprocess.Popen, str]:
    """A private Postgres cluster in data_dir on 127.0.0.1:port with a `sluice` database."""
    data_dir = Path(data_dir).resolve()  # postgres runs in data_dir: a relative socket dir would miss
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres", "postgres")
            data_dir.chmod(0o700)
        subprocess.run(
            _as_postgres_user(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(data_dir),
                    "-U",
                    "sluice",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    options = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={data_dir}",
        "-c",
        "max_connections=200",
    ]
    if not durable:  # tests: a crash loses nothing we care about
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = subprocess.Popen(
        _as_postgres_user([_pg_bin("postgres"), "-D", str(data_dir), "-p", str(port), *options]),
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir.parent / "postgres.log", "ab"),
        start_new_session=True,
    )
    proc.stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for clients to leave
    admin = f"postgresql://sluice@127.0.0.1:{port}/postgres"
    wait_until(lambda: can_connect(admin), 30, "postgres", proc)
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = 'sluice'")
        if cur.fetchone() is None:
            cur.execute("CREATE DATABASE sluice")
    conn.close()
    return proc, f"postgresql://sluice@127.0.0.1:{port}/sluice"


def start_redis(state_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server not found: install Redis (scripts/bootstrap.sh does)")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(state_dir),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 15, "redis", proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_moto(port: int, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 30, "moto server", proc)
    return proc, f"http://127.0.0.1:{port}"


def api_command(service: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that runs one of the APIs (`ingest`, `control`) under gunicorn on host:port."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(Path(__file__).resolve().parents[1] / "deploy/gunicorn.conf.py"),
        "-b",
        f"{host}:{port}",
        f"services.{service}.app:create_app()",
    ]


def celery_command(*args: str) -> list[str]:
    """`celery -A services.worker.main ARGS...` from this environment."""
    return [str(Path(sys.executable).parent / "celery"), "-A", "services.worker.main", *args]


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """The process's stop signal (SIGTERM unless it set another), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, getattr(proc, "stop_signal", signal.SIGTERM))
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class LocalStack:
    root: Path
    database_url: str
    aws_endpoint_url: str | None = None
    redis_url: str | None = None
    procs: dict = field(default_factory=dict)


@contextmanager
def private_stack(prefix: str, moto: bool = True, redis: bool = False, durable: bool = False):
    """A throwaway, migrated Postgres (and moto server, Redis) on free ports in a temp directory.

    The test suite and the benchmarks run on these, so they never touch `make run`'s stack.
    """
    from services.migrations import upgrade

    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the postgres user must reach its data directory
    stack = None
    procs: dict = {}
    try:
        procs["postgres"], database_url = start_postgres(root / "pg", free_port(), durable=durable)
        stack = LocalStack(root, database_url, procs=procs)
        if redis:
            procs["redis"], stack.redis_url = start_redis(root, free_port())
        if moto:
            procs["moto"], stack.aws_endpoint_url = start_moto(free_port(), root / "moto.log")
        upgrade(database_url)
        yield stack
    finally:
        for proc in reversed(procs.values()):
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)
