"""`sluice`: the operators' command line (database, tenants, local stack)."""

import argparse
import json
import os
import sys
import time
from contextlib import closing
from pathlib import Path

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from services import app_deletions, dlq, parking, status, tenancy
from services.progress import Progress
from services.settings import CommonSettings, SettingsError
from shared.enums import KeyScope

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


def _emit_key(args, app_id: int, key_id: int, key: str) -> None:
    emit(
        args,
        {"app_id": app_id, "key_id": key_id, "api_key": key, "scope": args.scope},
        f"app_id  {app_id}\napi_key {key}   ({args.scope} key, shown once: keep it)",
    )


def cmd_create_app(args):
    with _connect() as conn:
        app_id = tenancy.create_app(conn, _org_id(conn, args.org), args.name)
        key_id, key = tenancy.create_key(conn, app_id, KeyScope(args.scope))
    _emit_key(args, app_id, key_id, key)


def cmd_create_key(args):
    with _connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM apps WHERE id = %s", (args.app,))
            if cur.fetchone() is None:
                raise SystemExit(f"sluice: no app with id {args.app}")
        key_id, key = tenancy.create_key(conn, args.app, KeyScope(args.scope))
    _emit_key(args, args.app, key_id, key)


def cmd_create_user(args):
    with _connect() as conn:
        user_id = tenancy.create_user(conn, _org_id(conn, args.org), args.email)
    emit(args, {"user_id": user_id, "email": args.email.strip().lower()}, f"user {user_id} {args.email}")


def cmd_deletions(args):
    with _connect() as conn:
        found = app_deletions.listing(conn, args.limit)
    lines = [
        f"app {d['app_id']} ({d['name']}, org {d['org_id']})  asked {d['requested_at']}  {d['state']}"
        f"  files {d['files_deleted']}  rows {d['rows_deleted']}"
        + (f"  last error: {d['last_error']}" if d["last_error"] else "")
        for d in found
    ]
    emit(args, {"deletions": found}, "\n".join(lines) or "no app was deleted")


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


def _group_line(group: dict) -> str:
    return f"app {group['app_id']} {group['kind']} batch {group['batch']} events {group['events']}"


def cmd_dlq_list(args):
    sqs, dlq_url, _ = _queues()
    messages = dlq.list_messages(sqs, dlq_url, limit=args.limit)
    with closing(_connect()) as conn:
        total, parked = parking.listing(conn, args.limit)
    lines = [
        f"{m['message_id']}  sent {m['sent_at']}  received {m['receive_count']}x  "
        + ", ".join(map(_group_line, m.get("groups", ())))
        + (f"  problem: {m['problem']}" if "problem" in m else "")
        for m in messages
    ] or ["the dead-letter queue is empty"]
    shown = f" (the oldest {len(parked)} below)" if total > len(parked) else ""
    lines.append(f"{total} parked events{shown}")
    lines += [
        f"{p['id']}  app {p['app_id']} {p['kind']} batch {p['batch']} sequence {p['sequence']}  "
        f"parked {p['parked_at']}  reason: {_one_line(p['reason'])}"
        for p in parked
    ]
    emit(args, {"messages": messages, "parked_count": total, "parked": parked}, "\n".join(lines))


def cmd_dlq_export(args):
    count = 0
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        with closing(_connect()) as conn:
            for record in parking.exported(conn, _parked_ids(args.id)):
                # ASCII JSON: an event may hold a NUL or a lone surrogate; escaped, it survives any pipe.
                out.write(json.dumps(record, ensure_ascii=True) + "\n")
                count += 1
    finally:
        if args.output:
            out.close()
    if args.output:  # on stdout the lines are the output
        emit(args, {"exported": count, "output": args.output}, f"wrote {count} events to {args.output}")


def cmd_dlq_replay(args):
    sqs, dlq_url, queue_url = _queues()
    message_ids = None if not args.id else {i for i in args.id if not _is_parked_id(i)}
    parked_ids = _parked_ids(args.id)
    moved = {"replayed": [], "not_deleted": 0, "not_found": []}
    if message_ids is None or message_ids:
        total = len(message_ids) if message_ids else args.limit or status.queue_depth(sqs, dlq_url)["visible"]
        with Progress("moving dead-letter messages back", total, enabled=not args.json) as progress:
            moved = dlq.replay(
                sqs, dlq_url, queue_url, ids=message_ids, limit=args.limit, progress=progress.update
            )
    events = {"stored": [], "still_parked": [], "not_found": []}
    if parked_ids is None or parked_ids:
        with closing(_connect()) as conn:
            events = parking.replay(conn, parked_ids)
    result = {**moved, **events, "not_found": [*moved["not_found"], *map(str, events["not_found"])]}
    lines = [f"moved {len(result['replayed'])} messages back to the events queue"]
    if result["not_deleted"]:
        lines[0] += f" ({result['not_deleted']} also still in the DLQ: harmless duplicates)"
    lines.append(f"stored {len(result['stored'])} parked events")
    lines += [f"still parked {p['id']}: {_one_line(p['reason'])}" for p in result["still_parked"]]
    if result["not_found"]:
        lines.append(f"not found: {' '.join(result['not_found'])}")
    emit(args, result, "\n".join(lines))


def cmd_dlq_drop(args):
    with closing(_connect()) as conn:
        result = parking.drop(conn, args.id)
    missing = f"\nnot parked: {' '.join(map(str, result['not_found']))}" if result["not_found"] else ""
    emit(args, result, f"dropped {len(result['dropped'])} parked events{missing}")


def _parked_ids(ids: list[str] | None) -> list[int] | None:
    """The parked event ids among --id values (they are numbers; SQS message ids never are)."""
    return None if not ids else [int(i) for i in ids if _is_parked_id(i)]


def _is_parked_id(value: str) -> bool:
    return value.isascii() and value.isdigit()  # isdigit() alone takes "²", which int() does not


def _seconds(text: str) -> float:
    """A positive number of seconds, for argparse (a usage error otherwise)."""
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


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

    def scope_option(p):
        p.add_argument(
            "--scope",
            choices=[s.value for s in KeyScope],
            default=KeyScope.INGEST.value,
            help="ingest (default): posts events only, the key producers ship; admin: also the control API",
        )

    p = command(admin, "create-app", cmd_create_app, "create an app and its first API key")
    p.add_argument("--org", required=True)
    p.add_argument("name")
    scope_option(p)
    p = command(admin, "create-key", cmd_create_key, "create another API key")
    p.add_argument("--app", type=int, required=True)
    scope_option(p)
    p = command(admin, "create-user", cmd_create_user, "add a user (by email) to an organization")
    p.add_argument("--org", required=True)
    p.add_argument("email")
    command(
        admin, "deletions", cmd_deletions, "deleted apps: whether their files and events are gone yet"
    ).add_argument("--limit", type=int, default=100)

    aws_group = groups.add_parser("aws", help="SQS queues and S3 bucket").add_subparsers(
        dest="cmd", required=True
    )
    command(aws_group, "provision", cmd_aws_provision, "create the queue, DLQ and bucket")

    dlq_group = groups.add_parser(
        "dlq", help="what the drain could not store: the SQS dead-letter queue and parked events"
    ).add_subparsers(dest="cmd", required=True)
    command(
        dlq_group, "list", cmd_dlq_list, "show dead-letter messages and parked events (both stay)"
    ).add_argument("--limit", type=int, default=100, help="show at most this many of each")
    p = command(dlq_group, "export", cmd_dlq_export, "write parked events as JSON Lines")
    p.add_argument("--output", help="write to this file; default stdout")
    p.add_argument("--id", action="append", help="only this parked event id (repeatable); default all")
    p = command(
        dlq_group,
        "replay",
        cmd_dlq_replay,
        "after a fix: move dead-letter messages back to the events queue and store parked events",
    )
    p.add_argument(
        "--id",
        action="append",
        help="only this SQS message id or parked event id (repeatable); default all",
    )
    p.add_argument("--limit", type=int, default=None, help="move at most this many SQS messages")
    p = command(dlq_group, "drop", cmd_dlq_drop, "delete parked events for good")
    p.add_argument("--id", action="append", type=int, required=True, help="a parked event id (repeatable)")

    p = command(groups, "status", cmd_status, "is Sluice healthy? exit code 1 when something needs attention")
    p.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes (--watch)")
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
    except OSError as exc:  # e.g. --output in a directory that does not exist
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
