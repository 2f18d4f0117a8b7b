"""`sluice`: the operators' command line (database, tenants, local stack)."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from services import dlq, status, tenancy
from services.progress import Progress
from services.settings import CommonSettings, SettingsError

# In a checkout, `make run` records where its Postgres, Redis and moto are; dev.env has the rest.
ENV_FILES = (Path(".state/run.env"), Path("deploy/dev.env"))


def load_env_files(files=ENV_FILES) -> None:
    """Fill unset variables from the env files; the real environment always wins."""
    for path in files:
        if path.is_file():
            for name, value in parse_env_file(path).items():
                os.environ.setdefault(name, value)


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def emit(args, data: dict, text: str) -> None:
    print(json.dumps(data) if args.json else text)


def _connect():
    return psycopg2.connect(CommonSettings.from_env().database_url)


def _org_id(conn, name: str) -> int:
    org_id = tenancy.org_id_by_name(conn, name)
    if org_id is None:
        raise SystemExit(f"sluice: no organization named {name!r}")
    return org_id


def cmd_db_upgrade(args):
    from services.migrations import upgrade

    applied = upgrade(CommonSettings.from_env().database_url)
    emit(args, {"applied": applied}, "\n".join(applied) or "database is up to date")


def cmd_create_org(args):
    with _connect() as conn:
        org_id = tenancy.create_org(conn, args.name)
    emit(args, {"org_id": org_id, "name": args.name}, f"org {org_id} {args.name}")


def cmd_create_app(args):
    with _connect() as conn:
        app_id = tenancy.create_app(conn, _org_id(conn, args.org), args.name)
        key_id, key = tenancy.create_key(conn, app_id)
    emit(
        args,
        {"app_id": app_id, "key_id": key_id, "api_key": key},
        f"app_id  {app_id}\napi_key {key}   (shown once: keep it)",
    )


def cmd_create_key(args):
    with _connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM apps WHERE id = %s", (args.app,))
            if cur.fetchone() is None:
                raise SystemExit(f"sluice: no app with id {args.app}")
        key_id, key = tenancy.create_key(conn, args.app)
    emit(
        args, {"app_id": args.app, "key_id": key_id, "api_key": key}, f"api_key {key}   (shown once: keep it)"
    )


def cmd_create_user(args):
    with _connect() as conn:
        user_id = tenancy.create_user(conn, _org_id(conn, args.org), args.email)
    emit(args, {"user_id": user_id, "email": args.email.strip().lower()}, f"user {user_id} {args.email}")


def cmd_aws_provision(args):
    from services import aws

    emit(args, aws.provision(CommonSettings.from_env()), "queues and bucket are ready")


def cmd_dev_run(args):
    try:
        from devtools import run
    except ImportError:  # the container image ships no development tools
        raise SystemExit("sluice: `dev run` needs a checkout of the repository (make run)") from None
    run.run()


def _queues():
    from services import aws

    settings = CommonSettings.from_env()
    sqs = aws.client(settings, "sqs")
    return sqs, aws.queue_url(sqs, settings.events_dlq), aws.queue_url(sqs, settings.events_queue)


def cmd_dlq_list(args):
    sqs, dlq_url, _ = _queues()
    messages = dlq.list_messages(sqs, dlq_url, limit=args.limit)
    lines = [
        f"{m['message_id']}  sent {m['sent_at']}  received {m['receive_count']}x  "
        + (f"app {m['app_id']} {m['kind']} batch {m['batch']} events {m['events']}" if "kind" in m else "")
        + (f"  problem: {m['problem']}" if "problem" in m else "")
        for m in messages
    ]
    emit(args, {"messages": messages}, "\n".join(lines) or "the dead-letter queue is empty")


def cmd_dlq_replay(args):
    sqs, dlq_url, queue_url = _queues()
    ids = set(args.id) if args.id else None
    total = len(ids) if ids else args.limit or status.queue_depth(sqs, dlq_url)["visible"]
    with Progress("moving parked messages back", total, enabled=not args.json) as progress:
        result = dlq.replay(sqs, dlq_url, queue_url, ids=ids, limit=args.limit, progress=progress.update)
    emit(
        args,
        result,
        f"moved {len(result['replayed'])} messages back to the events queue"
        + (
            f" ({result['not_deleted']} also still in the DLQ: harmless duplicates)"
            if result["not_deleted"]
            else ""
        )
        + (f"\nnot in the DLQ: {' '.join(result['not_found'])}" if result["not_found"] else ""),
    )


def cmd_status(args) -> int:
    """Print the status (again every --interval seconds with --watch); 1 when something needs attention."""
    from services import aws

    settings = CommonSettings.from_env()
    sqs = aws.client(settings, "sqs", connect_timeout=5, read_timeout=10, retries={"max_attempts": 1})
    on_terminal = sys.stdout.isatty()
    healthy = False
    try:
        while True:
            found = status.collect(settings, sqs, args.max_lag)
            healthy = found["healthy"]
            if args.watch and on_terminal and not args.json:
                print("\x1b[H\x1b[2J", end="")  # redraw in place: cursor home, clear the screen
            emit(args, found, status.text(found))
            sys.stdout.flush()
            if not args.watch:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0 if healthy else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)

    def command(group, name, func, help_text):
        p = group.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(func=func)
        return p

    db = groups.add_parser("db", help="database schema").add_subparsers(dest="cmd", required=True)
    command(db, "upgrade", cmd_db_upgrade, "apply pending migrations")

    admin = groups.add_parser("admin", help="organizations, apps, keys, users").add_subparsers(
        dest="cmd", required=True
    )
    command(admin, "create-org", cmd_create_org, "create an organization").add_argument("name")
    p = command(admin, "create-app", cmd_create_app, "create an app and its first API key")
    p.add_argument("--org", required=True)
    p.add_argument("name")
    command(admin, "create-key", cmd_create_key, "create another API key").add_argument(
        "--app", type=int, required=True
    )
    p = command(admin, "create-user", cmd_create_user, "add a user (by email) to an organization")
    p.add_argument("--org", required=True)
    p.add_argument("email")

    aws_group = groups.add_parser("aws", help="SQS queues and S3 bucket").add_subparsers(
        dest="cmd", required=True
    )
    command(aws_group, "provision", cmd_aws_provision, "create the queue, DLQ and bucket")

    dlq_group = groups.add_parser("dlq", help="the events dead-letter queue").add_subparsers(
        dest="cmd", required=True
    )
    command(dlq_group, "list", cmd_dlq_list, "show parked messages (they stay parked)").add_argument(
        "--limit", type=int, default=100
    )
    p = command(dlq_group, "replay", cmd_dlq_replay, "move parked messages back to the events queue")
    p.add_argument("--id", action="append", help="only this message id (repeatable); default all")
    p.add_argument("--limit", type=int, default=None, help="move at most this many")

    p = command(groups, "status", cmd_status, "is Sluice healthy? exit code 1 when something needs attention")
    p.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (--watch)")
    p.add_argument(
        "--max-lag",
        type=float,
        default=status.DEFAULT_MAX_LAG_SECONDS,
        help="drain lag in seconds above which status needs attention (default: %(default)s)",
    )

    dev = groups.add_parser("dev", help="local development").add_subparsers(dest="cmd", required=True)
    command(dev, "run", cmd_dev_run, "start the whole trio on this machine (make run)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # `dev run` decides afresh where everything is; a previous run's record would mislead it.
    load_env_files(ENV_FILES[1:] if args.group == "dev" else ENV_FILES)
    try:
        code = args.func(args)
    except SettingsError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    except psycopg2.Error as exc:
        print(f"sluice: database error: {exc}".strip(), file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # e.g. the queues were never provisioned
        print(f"sluice: AWS error: {exc}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
