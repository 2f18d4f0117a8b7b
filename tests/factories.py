"""Builders for what the tests send and store: events, API calls, envelopes, tenants, people, rows.

Tests import payloads and builders from here, never from one another.
"""

import copy
import json
import time
import uuid
from dataclasses import dataclass

from services import tenancy
from shared import envelope
from shared.enums import KeyScope
from shared.schemas.api_calls import validate_moesif_events


def barchart_event(**fields) -> dict:
    """A valid Barchart Event; keyword arguments replace its fields."""
    return {
        "customer": "ACME",
        "product": "WEB",
        "type": "LOGIN",
        "timestamp": 1700000000123,
        "context": [],
        **fields,
    }


# The plainest event the drain tests store.
BARCHART_EVENT = barchart_event(customer="C", product="P", type="T", timestamp=1700000000000, context=["x"])

# A Moesif API call with every field the drain maps to a column, and text that needs escaping.
MOESIF_CALL = {
    "request": {
        "time": "2024-05-01T10:00:00.250+02:00",
        "uri": "https://api.example.com/v1/items?page=2",
        "verb": "GET",
        "ip_address": "203.0.113.9",
        "headers": {"Accept": "application/json"},
        "body": None,
        "api_version": "1.2",
        "transfer_encoding": None,
    },
    "response": {
        "time": "2024-05-01T08:00:00.400Z",
        "status": 200,
        "ip_address": None,
        "headers": {"Content-Type": "application/json"},
        "body": {"items": [1, 2]},
        "transfer_encoding": "json",
    },
    "user_id": "u-17",
    "company_id": "",
    "session_token": None,
    "tags": "me",
    "metadata": {"plan": "gold", "note": "tab\there\\back"},
    "direction": "Incoming",
    "weight": 3,
    "blocked_by": None,
    "transaction_id": "tx-1",
}

# What the real moesifapi client sends: naive ISO times, explicit nulls for what it lacks.
MOESIF_CLIENT_CALL = {
    "request": {
        "time": "2024-05-01T10:00:00.123456",
        "uri": "https://api.acme.test/items?q=1",
        "verb": "GET",
        "ip_address": "203.0.113.9",
        "api_version": None,
        "headers": {"Accept": "*/*"},
        "body": None,
        "transfer_encoding": None,
    },
    "response": {
        "time": "2024-05-01T10:00:00.456Z",
        "status": 200,
        "ip_address": None,
        "headers": {"Content-Type": "application/json"},
        "body": {"items": [1, 2]},
        "transfer_encoding": None,
    },
    "session_token": None,
    "tags": None,
    "user_id": "u-1",
    "company_id": None,
    "metadata": {"plan": "pro"},
    "direction": "Incoming",
    "weight": None,
    "blocked_by": None,
    "transaction_id": "t-1",
}


def moesif_call(**fields) -> dict:
    """A deep copy of MOESIF_CALL; keyword arguments replace its top-level fields."""
    return {**copy.deepcopy(MOESIF_CALL), **fields}


def envelope_bodies(kind: str, app_id: int, events: list, batch: str | None = None, max_bytes: int = 262_144):
    """SQS message bodies for events, packed as the ingest API packs them."""
    if kind == "moesif":
        events = validate_moesif_events(events)
    return envelope.pack(kind, app_id, batch or str(uuid.uuid4()), events, int(time.time() * 1000), max_bytes)


def make_tenant(db) -> tuple[int, str]:
    """A fresh org with one app and one key: (app_id, api_key)."""
    with db.connection() as conn:
        org_id = tenancy.create_org(conn, f"org-{uuid.uuid4().hex[:8]}")
        app_id = tenancy.create_app(conn, org_id, "app")
        _, key = tenancy.create_key(conn, app_id, KeyScope.ADMIN)
    return app_id, key


@dataclass
class Person:
    email: str
    user_id: int
    org_id: int
    app_id: int
    key_id: int
    api_key: str


def person(db, org_name: str | None = None) -> Person:
    """A user in a fresh org that has one app with one key."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    with db.connection() as conn:
        org_id = tenancy.create_org(conn, org_name or f"org-{uuid.uuid4().hex[:8]}")
        user_id = tenancy.create_user(conn, org_id, email, "Pat Example")
        app_id = tenancy.create_app(conn, org_id, "app")
        key_id, key = tenancy.create_key(conn, app_id, KeyScope.ADMIN)
    return Person(email, user_id, org_id, app_id, key_id, key)


# The smallest report request Barchart's contract allows: customer and product are required.
REPORT_REQUEST = {"filter": {"customer": "ACME", "product": "WEB"}}

# Stored events for reports: (customer, product, type, timestamp, context), with text CSV must quote.
REPORT_EVENTS = [
    ("ACME", "WEB", "LOGIN", 1_700_000_000_300, ["eu", "comma, inside"]),
    ("ACME", "WEB", "CLICK", 1_700_000_000_100, ['a "quoted" word', "line\nbreak", "ünïcode"]),
    ("ACME", "APP", "LOGIN", 1_700_000_000_200, []),
    ("OTHER", "WEB", "LOGIN", 1_700_000_000_150, ["x"]),
    ("ACME", "WEB", "LOGOUT", 1_700_000_000_900, ["late"]),
]


def insert_events(db, app_id, events=REPORT_EVENTS) -> str:
    """Store events straight into Postgres (as the drain would); return their batch id."""
    batch = str(uuid.uuid4())
    with db.connection() as conn, conn.cursor() as cur:
        for seq, (customer, product, type_, ts, context) in enumerate(events):
            cur.execute(
                """INSERT INTO events (app_id, batch, sequence, customer, product, type, timestamp,
                                       context, received_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())""",
                (app_id, batch, seq, customer, product, type_, ts, json.dumps(context)),
            )
    return batch


def insert_many_events(db, app_id, count: int) -> None:
    """Store `count` page views of one batch in a single statement."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO events (app_id, batch, sequence, customer, product, type, timestamp,
                                   context, received_at)
               SELECT %s, %s, g, 'ACME', 'WEB', 'PAGE-VIEW', 1700000000000 + g,
                      jsonb_build_array('session-' || (g %% 97), 'some context text'), now()
               FROM generate_series(0, %s - 1) g""",
            (app_id, str(uuid.uuid4()), count),
        )


def insert_parked_event(db, app_id) -> None:
    """A Barchart event the drain parked, as if Postgres had refused it."""
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO parked_events (app_id, kind, batch, sequence, received_ms, event, reason)
               VALUES (%s, 'barchart', %s, 0, 0, '{}', 'refused by the database')""",
            (app_id, str(uuid.uuid4())),
        )
