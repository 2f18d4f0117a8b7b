"""Key scopes: an ingest key posts events and nothing else, an admin key does everything an app's
key could do before scopes. New keys are ingest unless admin is asked for; keys that existed
before scopes are admin. Through the real ingest and control apps, Postgres and Redis."""

import uuid

import psycopg2
import pytest

from services import tenancy
from services.ingest.app import create_app as create_ingest
from services.migrations import migration_files, upgrade
from services.settings import IngestSettings
from shared.enums import KeyScope
from tests.factories import MOESIF_CLIENT_CALL, REPORT_REQUEST, barchart_event, person
from tests.helpers import client_for, control_app, log_in, query

EVENT = barchart_event()
MEWS = {"ClientToken": "ct", "Client": "scopes 1.0"}


@pytest.fixture
def apis(stack, names, provisioned, outbox):
    ingest = create_ingest(stack.settings(IngestSettings, **names, key_cache_seconds=0)).test_client()
    return ingest, client_for(control_app(stack, outbox, **names))


def test_an_ingest_key_posts_events_and_is_refused_by_the_control_api(apis, db, stack):
    ingest, control = apis
    pat = person(db)
    with db.connection() as conn:
        _, key = tenancy.create_key(conn, pat.app_id, KeyScope.INGEST)
    basic = (str(pat.app_id), key)
    assert ingest.post("/events", json=[EVENT], auth=basic).status_code == 200
    moesif = ingest.post("/v1/events", json=MOESIF_CLIENT_CALL, headers={"X-Moesif-Application-Id": key})
    assert moesif.status_code == 200, moesif.json

    reports = control.post("/reports", json=REPORT_REQUEST, auth=basic)
    assert reports.status_code == 401 and reports.headers["WWW-Authenticate"].startswith("Basic")
    assert reports.json[0]["value"]["code"] == "INSUFFICIENT_SCOPE"  # Barchart's shape
    exports = control.post(
        "/api/connector/v1/exports/add", json={**MEWS, "AccessToken": key, "EntityType": "Event"}
    )
    assert exports.status_code == 401 and exports.json["error"]["code"] == "INSUFFICIENT_SCOPE"
    connectors = control.post("/connectors", json={"driver": "noop", "config": {}}, auth=basic)
    assert connectors.status_code == 401 and connectors.json["errorCode"] == "INSUFFICIENT_SCOPE"
    assert "admin key" in connectors.json["errorMessage"]
    assert query(stack.database_url, "SELECT count(*) FROM render_jobs WHERE app_id = %s", (pat.app_id,)) == [
        (0,)
    ]

    # The admin key does both.
    admin = (str(pat.app_id), pat.api_key)
    assert ingest.post("/events", json=[EVENT], auth=admin).status_code == 200
    assert control.post("/reports", json=REPORT_REQUEST, auth=admin).status_code == 200
    assert control.post("/connectors", json={"driver": "noop", "config": {}}, auth=admin).status_code == 201


def test_a_refused_ingest_key_is_not_a_wrong_guess(stack, outbox, db):
    control = client_for(control_app(stack, outbox, auth_failure_limit=2))
    pat = person(db)
    with db.connection() as conn:
        _, key = tenancy.create_key(conn, pat.app_id, KeyScope.INGEST)
    codes = [control.get("/pipelines", auth=(str(pat.app_id), key)).status_code for _ in range(5)]
    assert codes == [401] * 5  # a producer misconfigured with its ingest key is told so, not throttled
    assert control.get("/pipelines", auth=(str(pat.app_id), pat.api_key)).status_code == 200


def test_keys_made_through_the_accounts_api_are_ingest_unless_admin_is_asked_for(apis, outbox, db):
    ingest, control = apis
    pat = person(db)
    session = {"session_key": log_in(control, outbox, pat.email)}

    made = control.post(f"/api/1/app/{pat.app_id}/key", json=session).json
    admin = control.post(f"/api/1/app/{pat.app_id}/key", json={**session, "scope": "admin"}).json
    assert (made["scope"], admin["scope"]) == ("ingest", "admin")
    bad = control.post(f"/api/1/app/{pat.app_id}/key", json={**session, "scope": "root"})
    assert bad.status_code == 400 and bad.json["error"]["message"].startswith("scope:")

    [app] = control.get(f"/api/1/app?org_id={pat.org_id}", json=session).json["app_list"]
    assert [(k["key_id"], k["scope"]) for k in app["api_keys"]] == [
        (pat.key_id, "admin"),
        (made["key_id"], "ingest"),
        (admin["key_id"], "admin"),
    ]
    for key, control_status in ((made["api_key"], 401), (admin["api_key"], 200)):
        auth = (str(pat.app_id), key)
        assert ingest.post("/events", json=[EVENT], auth=auth).status_code == 200
        assert control.get("/pipelines", auth=auth).status_code == control_status


def test_keys_that_existed_before_scopes_are_admin_and_new_ones_must_name_theirs(stack):
    name = f"before_scopes_{uuid.uuid4().hex[:8]}"
    server = psycopg2.connect(stack.database_url)
    server.autocommit = True  # CREATE DATABASE runs outside a transaction
    with server.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    server.close()
    url = stack.database_url.rsplit("/", 1)[0] + "/" + name
    before = [(n, sql) for n, sql in migration_files() if n < "0010"]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for _, sql in before:
            cur.execute(sql)
        cur.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
        cur.executemany("INSERT INTO schema_migrations (name) VALUES (%s)", [(n,) for n, _ in before])
        cur.execute("INSERT INTO orgs (name) VALUES ('old') RETURNING id")
        cur.execute("INSERT INTO apps (org_id, name) VALUES (%s, 'old') RETURNING id", (cur.fetchone()[0],))
        app_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO api_keys (app_id, prefix, key_hash) VALUES (%s, 'sk_old', %s)",
            (app_id, tenancy.hash_key("sk_old_key")),
        )
    conn.close()

    assert "0010_key_scopes_and_app_deletions.sql" in upgrade(url)

    with psycopg2.connect(url) as conn:
        assert tenancy.live_key(conn, "sk_old_key") == (app_id, KeyScope.ADMIN)
        with pytest.raises(psycopg2.errors.NotNullViolation), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO api_keys (app_id, prefix, key_hash) VALUES (%s, 'sk_new', %s)",
                (app_id, tenancy.hash_key("sk_new_key")),
            )
    conn.close()
