"""A bad event never sinks good ones: the drain stores what Postgres takes, parks the rest with the
database's reason, and deletes the message; operators handle parked events with `sluice dlq`.

The messages are written straight to SQS, as an older ingest (or one with a bug) would have.
"""

import json
import math
import time
import uuid
from contextlib import closing

import psycopg2
from prometheus_client import REGISTRY

from services import event_writer, parking
from shared import envelope
from shared.schemas.api_calls import validate_moesif_events
from tests.factories import BARCHART_EVENT, MOESIF_CALL
from tests.helpers import depth, drain_all, query, send, wait_for


def pack(kind, app_id, events, batch=None, first_sequence=0) -> str:
    """One message, as any ingest version would write it (no validation on the way)."""
    batch = batch or str(uuid.uuid4())
    encoded = envelope.encode_events(events)
    group = envelope.Group(kind, app_id, batch, first_sequence, int(time.time() * 1000), encoded)
    [body] = envelope.pack_groups([group], 262_144)
    return body


def parked_rows(stack, app_id) -> list[tuple]:
    return query(
        stack.database_url,
        "SELECT kind, sequence, reason, event FROM parked_events WHERE app_id = %s ORDER BY kind, sequence",
        (app_id,),
    )


def parked_count(kind: str) -> float:
    return REGISTRY.get_sample_value("sluice_drain_events_parked_total", {"kind": kind}) or 0


def test_events_postgres_refuses_are_parked_and_the_rest_of_their_message_is_stored(stack, tenant, drainer):
    app_id = tenant[0]
    barchart = [
        BARCHART_EVENT,
        {**BARCHART_EVENT, "customer": "A\u0000B"},  # text cannot hold U+0000
        {**BARCHART_EVENT, "timestamp": 100000000000000000000},  # beyond bigint
        BARCHART_EVENT,
        {"customer": "an event from nowhere"},  # cannot even be made a row
    ]
    [call] = validate_moesif_events([{**MOESIF_CALL, "transaction_id": None}])
    moesif = [call, {**call, "weight": 2**40}, {**call, "request": {**call["request"], "body": "\u0000"}}]
    before = parked_count("barchart"), parked_count("moesif")
    send(drainer.sqs, drainer.queue_url, [pack("barchart", app_id, barchart), pack("moesif", app_id, moesif)])
    drain_all(drainer)

    assert query(
        stack.database_url, "SELECT sequence FROM events WHERE app_id = %s ORDER BY sequence", (app_id,)
    ) == [(0,), (3,)]
    assert query(stack.database_url, "SELECT sequence FROM api_calls WHERE app_id = %s", (app_id,)) == [(0,)]
    parked = parked_rows(stack, app_id)
    assert [(kind, seq) for kind, seq, _, _ in parked] == [
        ("barchart", 1),
        ("barchart", 2),
        ("barchart", 4),
        ("moesif", 1),
        ("moesif", 2),
    ]
    reasons = [reason for _, _, reason, _ in parked]
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in reasons[0]
    assert "out of range for type bigint" in reasons[1] and "column timestamp" in reasons[1]
    assert "KeyError" in reasons[2]
    assert "out of range for type integer" in reasons[3] and "column weight" in reasons[3]
    assert "unsupported Unicode escape sequence" in reasons[4]
    # Each parked event is kept exactly as it came, NUL and all.
    assert [json.loads(event) for _, _, _, event in parked] == [*barchart[1:3], barchart[4], *moesif[1:]]
    # Nothing left to redeliver, nothing dead-lettered: the messages are done with.
    assert depth(drainer.sqs, drainer.queue_url) == (0, 0)
    assert (parked_count("barchart"), parked_count("moesif")) == (before[0] + 3, before[1] + 2)


def test_a_redelivered_message_parks_its_bad_event_once(stack, tenant, drainer):
    app_id = tenant[0]
    body = pack("barchart", app_id, [BARCHART_EVENT, {**BARCHART_EVENT, "type": "\u0000"}])
    send(drainer.sqs, drainer.queue_url, [body, body])
    drain_all(drainer)
    assert [(kind, seq) for kind, seq, _, _ in parked_rows(stack, app_id)] == [("barchart", 1)]
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,)) == [(1,)]


def test_bad_events_are_found_by_halving_not_one_insert_per_event(stack, tenant, drainer, monkeypatch):
    app_id = tenant[0]
    bad = {**BARCHART_EVENT, "product": "\u0000"}
    where_bad = {(2, 17), (7, 90)}  # (message, event)
    messages = [
        pack("barchart", app_id, [bad if (m, i) in where_bad else BARCHART_EVENT for i in range(100)])
        for m in range(10)
    ]
    send(drainer.sqs, drainer.queue_url, messages)
    writes = []
    real_write = event_writer.write

    def counted(conn, lines):  # the real COPY, counted
        writes.append(1)
        return real_write(conn, lines)

    monkeypatch.setattr(event_writer, "write", counted)
    drained = []

    def all_drained():
        drained.append(drainer.drain_once(wait_seconds=1))
        return sum(drained) == 10

    wait_for(all_drained, 60, "the ten messages drained")
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,)) == [(998,)]
    assert len(parked_rows(stack, app_id)) == 2
    # Two bad events among 1000: one COPY that fails, then two halvings of about log2(1000) each.
    assert len(writes) <= 1 + 2 * 2 * math.ceil(math.log2(1000))


def test_operators_list_export_replay_and_drop_parked_events(stack, tenant, drainer, sluice, tmp_path):
    """A constraint of this app's own stands for a bug that is fixed later."""
    app_id = tenant[0]

    def refuse_blocked(name: str | None, drop: str | None = None):
        sql = f"ALTER TABLE events DROP CONSTRAINT IF EXISTS {drop};" if drop else "SELECT 1;"
        if name:
            sql += (
                f"ALTER TABLE events ADD CONSTRAINT {name}"
                f" CHECK (app_id <> {app_id} OR customer <> 'BLOCKED') NOT VALID"
            )
        with psycopg2.connect(stack.database_url) as conn, conn.cursor() as cur:
            cur.execute(sql)

    first_bug, second_bug = f"blocked_{app_id}_a", f"blocked_{app_id}_b"
    refuse_blocked(first_bug)
    try:
        blocked = {**BARCHART_EVENT, "customer": "BLOCKED"}
        nul = {**BARCHART_EVENT, "customer": "nul\u0000"}
        batch = str(uuid.uuid4())
        message = pack("barchart", app_id, [BARCHART_EVENT, blocked, nul], batch)
        send(drainer.sqs, drainer.queue_url, [message])
        drain_all(drainer)

        listed = [p for p in sluice("dlq", "list", "--limit", "100000")["parked"] if p["app_id"] == app_id]
        assert [(p["kind"], p["batch"], p["sequence"]) for p in listed] == [
            ("barchart", batch, 1),
            ("barchart", batch, 2),
        ]
        assert first_bug in listed[0]["reason"] and "0x00" in listed[1]["reason"]
        blocked_id, nul_id = listed[0]["id"], listed[1]["id"]

        exported = sluice("dlq", "export", "--id", str(blocked_id), "--id", str(nul_id), json_output=False)
        records = [json.loads(line) for line in exported.splitlines()]
        assert [(r["id"], r["event"]) for r in records] == [(blocked_id, blocked), (nul_id, nul)]
        assert "\u0000" not in exported  # escaped: safe for any terminal or pipe
        out = tmp_path / "parked.jsonl"
        assert sluice("dlq", "export", "--output", str(out))["output"] == str(out)
        assert nul in [json.loads(line)["event"] for line in out.read_text().splitlines()]

        refuse_blocked(second_bug, drop=first_bug)  # a first fix that is not enough
        again = sluice("dlq", "replay", "--id", str(blocked_id))
        assert again["stored"] == [] and [p["id"] for p in again["still_parked"]] == [blocked_id]
        assert second_bug in again["still_parked"][0]["reason"]  # parked with the new reason

        refuse_blocked(None, drop=second_bug)  # the real fix
        replayed = sluice("dlq", "replay", "--id", str(blocked_id), "--id", "999999999")
        assert replayed["stored"] == [blocked_id] and replayed["not_found"] == ["999999999"]
        assert sluice("dlq", "drop", "--id", str(nul_id)) == {"dropped": [nul_id], "not_found": []}
    finally:
        refuse_blocked(None, drop=first_bug)
        refuse_blocked(None, drop=second_bug)

    assert parked_rows(stack, app_id) == []
    assert query(
        stack.database_url,
        "SELECT sequence, customer FROM events WHERE app_id = %s ORDER BY sequence",
        (app_id,),
    ) == [(0, "C"), (1, "BLOCKED")]


def test_replay_stores_what_a_fix_made_storable_in_one_go(stack, tenant, db):
    """Replaying everything: stored ones leave parked_events, the rest stay with their reason."""
    app_id = tenant[0]
    batch = str(uuid.uuid4())
    items = event_writer.pending(
        [
            {
                "kind": "barchart",
                "app_id": app_id,
                "batch": batch,
                "first_sequence": 0,
                "received_ms": 1,
                "events": [BARCHART_EVENT, {**BARCHART_EVENT, "type": "\u0000"}],
            }
        ]
    )
    with db.connection() as conn:
        parking.park(conn, [parking.Parked(item, "parked by hand") for item in items])
    rows = query(stack.database_url, "SELECT id FROM parked_events WHERE app_id = %s ORDER BY id", (app_id,))
    ids = [row[0] for row in rows]
    with closing(psycopg2.connect(stack.database_url)) as conn:
        result = parking.replay(conn, ids)
    assert result["stored"] == ids[:1] and [p["id"] for p in result["still_parked"]] == ids[1:]
    # Stored as the envelope said: received 1 ms after the epoch.
    received = "SELECT received_at = to_timestamp(0.001) FROM events WHERE app_id = %s"
    assert query(stack.database_url, received, (app_id,)) == [(True,)]
