"""Migrations apply to a database that already holds rows, including rows a new constraint forbids."""

import json
import os
import uuid
from contextlib import closing

import psycopg2
import pytest

from services.migrations import migration_files, upgrade
from tests.helpers import query


@pytest.fixture
def database_before(stack):
    """make(name): a new database in the test Postgres, migrated up to (not including) `name`."""
    admin = psycopg2.connect(stack.database_url)
    admin.autocommit = True
    created = []

    def make(name: str) -> str:
        database = f"migrations_{uuid.uuid4().hex[:10]}"
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
        created.append(database)
        url = stack.database_url.rsplit("/", 1)[0] + "/" + database
        with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz)")
            for file_name, sql in migration_files():
                if file_name < name:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations VALUES (%s, now())", (file_name,))
        return url

    yield make
    with admin.cursor() as cur:
        for database in created:
            cur.execute(f"DROP DATABASE {database} WITH (FORCE)")
    admin.close()


def add_call(url, app_id, transaction_id, uri):
    request = {"time": "2024-05-01T10:00:00.000000Z", "uri": uri, "verb": "GET", "body": None}
    response = {"time": "2024-05-01T10:00:01.000000Z", "status": 200, "body": {"ok": "ü"}}
    query(
        url,
        """INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb, status,
                                  ip_address, transaction_id, request, response, received_at)
           VALUES (%s, gen_random_uuid(), 0, now(), now(), %s, 'GET', 200, '', %s, %s, %s,
                   '2024-05-01T10:00:02Z')
           RETURNING id""",
        (app_id, uri, transaction_id, json.dumps(request), json.dumps(response)),
    )


def test_0008_keeps_the_first_of_calls_stored_twice_and_parks_the_copies(database_before):
    url = database_before("0008_parked_events.sql")
    for app_id, transaction_id, uri in [
        (1, "t-1", "/first"),
        (1, "t-1", "/copy"),
        (1, "t-1", "/another-copy"),
        (1, "t-2", "/single"),
        (1, None, "/no-id"),
        (1, None, "/no-id-either"),
        (1, "", "/empty-id"),
        (1, "", "/empty-id-too"),
        (2, "t-1", "/other-app"),
    ]:
        add_call(url, app_id, transaction_id, uri)

    assert upgrade(url)[0] == "0008_parked_events.sql"

    assert sorted(query(url, "SELECT app_id, uri FROM api_calls")) == [
        (1, "/empty-id"),
        (1, "/empty-id-too"),
        (1, "/first"),
        (1, "/no-id"),
        (1, "/no-id-either"),
        (1, "/single"),
        (2, "/other-app"),
    ]
    [first_id] = query(url, "SELECT id FROM api_calls WHERE uri = '/first'")[0]
    parked = query(url, "SELECT app_id, kind, event, reason, received_ms FROM parked_events ORDER BY id")
    assert sorted(json.loads(event)["request"]["uri"] for _, _, event, _, _ in parked) == [
        "/another-copy",
        "/copy",
    ]
    for app_id, kind, event, reason, received_ms in parked:
        assert (app_id, kind, received_ms) == (1, "moesif", 1714557602000)
        assert reason == f"duplicate transaction_id: this call is stored as api_calls row {first_id}"
        assert json.loads(event)["transaction_id"] == "t-1"
        assert json.loads(event)["response"]["body"] == {"ok": "ü"}
    # From now on the index keeps one per app and transaction_id.
    with pytest.raises(psycopg2.errors.UniqueViolation):
        add_call(url, 1, "t-2", "/again")


def test_a_transaction_id_of_any_length_fits_the_0008_unique_index(stack, tenant):
    long_id = os.urandom(20_000).hex()  # incompressible, far over a B-tree entry's 2704 bytes
    query(
        stack.database_url,
        """INSERT INTO api_calls (app_id, batch, sequence, request_time, response_time, uri, verb,
                                  status, ip_address, transaction_id, request, response, received_at)
           VALUES (%s, gen_random_uuid(), 0, now(), now(), '/', 'GET', 200, '', %s, '{}', '{}', now())
           RETURNING 1""",
        (tenant[0], long_id),
    )
