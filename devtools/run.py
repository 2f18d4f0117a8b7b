"""`make run`: the whole trio on one machine, in the foreground until Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from devtools import devstack
from services import aws, tenancy
from services.database import Database
from services.migrations import upgrade
from services.settings import WorkerSettings
from shared.enums import KeyScope

STATE = Path(os.environ.get("SLUICE_STATE_DIR", ".state"))
ROOT = Path(__file__).resolve().parents[1]
DEMO_ORG, DEMO_APP = "demo", "demo-app"
DEMO_USER = "demo@example.com"  # log in as this user; the mail lands in .state/outbox/


def _postgres(procs) -> str:
    """The Postgres named by SLUICE_DATABASE_URL if it answers, else the one on 5432, else ours."""
    url = os.environ["SLUICE_DATABASE_URL"]
    if devstack.can_connect(url):
        return url
    if devstack.port_open(5432) and os.geteuid() == 0:
        # A system Postgres without our role: create it through the local superuser, best effort.
        sql = (
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='sluice') THEN "
            "CREATE ROLE sluice LOGIN PASSWORD 'sluice' CREATEDB; END IF; END$$;"
        )
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", sql], capture_output=True)
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "createdb", "-O", "sluice", "sluice"], capture_output=True
        )
        if devstack.can_connect(url):
            return url
    port = 5432 if not devstack.port_open(5432) else devstack.free_port()
    proc, url = devstack.start_postgres(STATE / "pg", port)
    procs.append(proc)
    print(f"started a private Postgres on port {port} (data in {STATE / 'pg'})")
    return url


def _redis(procs) -> str:
    url = os.environ["SLUICE_REDIS_URL"]
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
        return url
    except redis.RedisError:
        pass
    port = 6379 if not devstack.port_open(6379) else devstack.free_port()
    proc, url = devstack.start_redis(STATE, port)
    procs.append(proc)
    print(f"started a private Redis on port {port}")
    return url


def _moto(procs) -> str | None:
    endpoint = os.environ.get("SLUICE_AWS_ENDPOINT_URL")
    if not endpoint:
        return None  # real AWS
    port = int(os.environ.get("SLUICE_MOTO_PORT", "5000"))
    if devstack.port_open(port):
        port = devstack.free_port()
    proc, url = devstack.start_moto(port, STATE / "moto.log")
    procs.append(proc)
    return url


def _mail_sink(sinks) -> dict:
    """Unless SLUICE_SMTP_HOST names a real server, a local sink keeps login mail as files."""
    if os.environ.get("SLUICE_SMTP_HOST"):
        return {}
    from devtools import mailsink

    port = int(os.environ.get("SLUICE_MAIL_SINK_PORT", "1025"))
    if devstack.port_open(port):
        port = devstack.free_port()
    sink = mailsink.start(STATE / "outbox", port, announce=lambda line: print(line, flush=True))
    sinks.append(sink)
    return {"SLUICE_SMTP_HOST": "127.0.0.1", "SLUICE_SMTP_PORT": str(port)}


def _seed(settings) -> tuple[int, str, str]:
    """The demo org and app, and a fresh ingest key and admin key for it (keys are stored hashed,
    so never re-shown)."""
    db = Database(settings.database_url, maxconn=1)
    with db.connection() as conn:
        org_id = tenancy.org_id_by_name(conn, DEMO_ORG) or tenancy.create_org(conn, DEMO_ORG)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM apps WHERE org_id = %s AND name = %s", (org_id, DEMO_APP))
            row = cur.fetchone()
        app_id = row[0] if row else tenancy.create_app(conn, org_id, DEMO_APP)
        _, ingest_key = tenancy.create_key(conn, app_id, KeyScope.INGEST)
        _, admin_key = tenancy.create_key(conn, app_id, KeyScope.ADMIN)
        tenancy.create_user(conn, org_id, DEMO_USER)
    db.close()
    return app_id, ingest_key, admin_key


def _services(env) -> list[tuple[str, list[str]]]:
    venv_bin = Path(sys.executable).parent
    gunicorn = [str(venv_bin / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py")]
    celery = [str(venv_bin / "celery"), "-A", "services.worker.main"]
    return [
        (
            "ingest",
            [*gunicorn, "-b", f"{env['host']}:{env['ingest_port']}", "services.ingest.app:create_app()"],
        ),
        (
            "control",
            [*gunicorn, "-b", f"{env['host']}:{env['control_port']}", "services.control.app:create_app()"],
        ),
        ("worker", [*celery, "worker", "-l", "INFO", "-c", os.environ.get("SLUICE_WORKER_CONCURRENCY", "2")]),
        ("beat", [*celery, "beat", "-l", "INFO", "-s", str(STATE / "celerybeat-schedule")]),
    ]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run() -> None:
    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    STATE.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    sinks = []  # the SMTP sink runs in this process, in a thread
    try:
        resolved = {"SLUICE_DATABASE_URL": _postgres(procs), "SLUICE_REDIS_URL": _redis(procs)}
        endpoint = _moto(procs)
        if endpoint:
            resolved["SLUICE_AWS_ENDPOINT_URL"] = endpoint
        resolved.update(_mail_sink(sinks))
        os.environ.update(resolved)
        # Recorded so that `sluice ...` in this checkout reaches the same stack with no flags.
        (STATE / "run.env").write_text("".join(f"{k}={v}\n" for k, v in resolved.items()))

        settings = WorkerSettings.from_env()
        upgrade(settings.database_url)
        aws.provision(settings)
        app_id, key, admin_key = _seed(settings)
        env = {
            "host": os.environ.get("SLUICE_HOST", "127.0.0.1"),
            "ingest_port": os.environ.get("SLUICE_INGEST_PORT", "8000"),
            "control_port": os.environ.get("SLUICE_CONTROL_PORT", "8001"),
        }
        # Loopback is open to connectors here (deploy/dev.env); these ports of ours stay closed to them.
        metrics_port = os.environ.get("SLUICE_WORKER_METRICS_PORT", "9540")
        os.environ.setdefault(
            "SLUICE_SERVICE_ENDPOINTS",
            f"{env['host']}:{env['ingest_port']},{env['host']}:{env['control_port']},localhost:{metrics_port}",
        )
        for _name, cmd in _services(env):
            procs.append(subprocess.Popen(cmd, start_new_session=True))
        for name, port in (("ingest", int(env["ingest_port"])), ("control", int(env["control_port"]))):
            devstack.wait_until(lambda port=port: devstack.port_open(port, env["host"]), 60, name)
        now_ms = int(time.time() * 1000)
        print(
            f"""
Sluice is running (Ctrl-C stops it)
  ingest API   http://{env["host"]}:{env["ingest_port"]}   (POST /events, /moesifapi/events, /v1/events)
  control API  http://{env["host"]}:{env["control_port"]}
  demo app id  {app_id}
  demo API key {key}   (ingest: posts events, what producers ship)
  admin key    {admin_key}   (also reports, exports, connectors and pipelines)
  demo user    {DEMO_USER}   (login mail is kept in {STATE / "outbox"}; its link is printed here)
  log in:  curl -d '{{"email":"{DEMO_USER}"}}' -H 'Content-Type: application/json' \\
         http://{env["host"]}:{env["control_port"]}/api/1/login
  try: curl -u {app_id}:{key} -H 'Content-Type: application/json' \\
         -d '[{{"customer":"ACME","product":"WEB","type":"LOGIN","timestamp":{now_ms},"context":[]}}]' \\
         http://{env["host"]}:{env["ingest_port"]}/events
""",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a service exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for proc in reversed(procs):
            devstack.stop(proc)
        for sink in sinks:
            sink.stop()
