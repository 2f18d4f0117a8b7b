"""The `sluice` console script, run as an operator would, against the test Postgres."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

from services.tenancy import live_key
from shared.enums import KeyScope

SLUICE = str(Path(sys.executable).parent / "sluice")


def sluice(stack, *args, cwd=None):
    done = subprocess.run(
        [SLUICE, *args], env=stack.env(), cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_operator_creates_org_app_key_and_user_with_json_output(stack, db, tmp_path):
    org = f"acme-{uuid.uuid4().hex[:6]}"
    assert json.loads(sluice(stack, "admin", "create-org", org, "--json"))["name"] == org
    created = json.loads(sluice(stack, "admin", "create-app", "--org", org, "shop", "--json"))
    app = str(created["app_id"])
    another = json.loads(sluice(stack, "admin", "create-key", "--app", app, "--scope", "admin", "--json"))
    user = json.loads(sluice(stack, "admin", "create-user", "--org", org, "Ann@Example.com", "--json"))
    assert user["email"] == "ann@example.com"
    assert (created["scope"], another["scope"]) == ("ingest", "admin")  # ingest unless asked
    with db.connection() as conn:
        assert live_key(conn, created["api_key"]) == (created["app_id"], KeyScope.INGEST)
        assert live_key(conn, another["api_key"]) == (created["app_id"], KeyScope.ADMIN)
        with conn.cursor() as cur:  # only the hash is stored, never the key
            cur.execute(
                "SELECT count(*) FROM api_keys WHERE key_hash::text LIKE %s", (f"%{created['api_key']}%",)
            )
            assert cur.fetchone()[0] == 0


def test_db_upgrade_is_idempotent(stack):
    assert json.loads(sluice(stack, "db", "upgrade", "--json")) == {"applied": []}


def test_checkout_run_env_file_is_found_without_flags(stack, tmp_path):
    """`make run` records its URLs in .state/run.env; sluice in that checkout needs no flags."""
    (tmp_path / ".state").mkdir()
    (tmp_path / ".state/run.env").write_text(f"SLUICE_DATABASE_URL={stack.database_url}\n")
    env = {k: v for k, v in stack.env().items() if k != "SLUICE_DATABASE_URL"}
    done = subprocess.run(
        [SLUICE, "admin", "create-org", f"o-{uuid.uuid4().hex[:6]}", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["org_id"] > 0


def test_unknown_org_is_a_clear_error_not_a_traceback(stack):
    done = subprocess.run(
        [SLUICE, "admin", "create-app", "--org", "no-such-org", "x"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "no organization named" in done.stderr and "Traceback" not in done.stderr


def test_bad_arguments_are_clear_errors_not_tracebacks(stack, tmp_path):
    def run(*args):
        return subprocess.run([SLUICE, *args], env=stack.env(), capture_output=True, text=True, timeout=60)

    unwritable = run("dlq", "export", "--output", str(tmp_path / "no-such-dir" / "parked.jsonl"))
    assert unwritable.returncode == 1 and "No such file or directory" in unwritable.stderr
    for interval in ("0", "-1", "soon"):
        bad = run("status", "--watch", "--interval", interval)
        assert bad.returncode == 2 and "--interval" in bad.stderr
    not_a_parked_id = run("dlq", "export", "--id", "\u00b2")  # a digit to isdigit(), not to int()
    assert not_a_parked_id.returncode == 0 and not_a_parked_id.stdout == ""
    for done in (unwritable, bad, not_a_parked_id):
        assert "Traceback" not in done.stderr
