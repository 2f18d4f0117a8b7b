"""Moesif API calls through the drain into api_calls, against real moto SQS and Postgres."""

import copy

from tests.factories import BARCHART_EVENT, MOESIF_CALL
from tests.factories import envelope_bodies as bodies
from tests.helpers import drain_all, query, send


def test_a_moesif_call_is_stored_with_every_field(stack, tenant, drainer):
    app_id = tenant[0]
    [body] = bodies("moesif", app_id, [MOESIF_CALL], batch="00000000-0000-4000-8000-000000000001")
    send(drainer.sqs, drainer.queue_url, [body])
    drain_all(drainer)
    [row] = query(
        stack.database_url,
        """
        SELECT batch::text, sequence, request_time = '2024-05-01T08:00:00.250Z'::timestamptz,
               response_time = '2024-05-01T08:00:00.400Z'::timestamptz, uri, verb, status, ip_address,
               user_id, company_id, session_token, direction, weight, transaction_id, tags, blocked_by,
               metadata, request->'headers', request->>'api_version', response->'body'
        FROM api_calls WHERE app_id = %s""",
        (app_id,),
    )
    assert row == (
        "00000000-0000-4000-8000-000000000001",
        0,
        True,
        True,
        "https://api.example.com/v1/items?page=2",
        "GET",
        200,
        "203.0.113.9",
        "u-17",
        "",
        None,
        "Incoming",
        3,
        "tx-1",
        "me",
        None,
        {"plan": "gold", "note": "tab\there\\back"},
        {"Accept": "application/json"},
        "1.2",
        {"items": [1, 2]},
    )


def test_moesif_and_barchart_in_one_receive_are_stored_once_each_even_when_redelivered(
    stack, tenant, drainer
):
    app_id = tenant[0]
    calls = [copy.deepcopy(MOESIF_CALL) for _ in range(30)]
    for i, call in enumerate(calls):
        call["request"]["uri"], call["transaction_id"] = f"/items/{i}", f"tx-{i}"
    messages = bodies("moesif", app_id, calls) + bodies("barchart", app_id, [BARCHART_EVENT] * 7)
    send(drainer.sqs, drainer.queue_url, messages + messages)  # every message delivered twice
    drain_all(drainer)
    assert query(
        stack.database_url, "SELECT count(*), count(DISTINCT uri) FROM api_calls WHERE app_id = %s", (app_id,)
    ) == [(30, 30)]
    assert query(stack.database_url, "SELECT count(*) FROM events WHERE app_id = %s", (app_id,)) == [(7,)]


def test_times_in_the_first_and_last_years_are_stored_as_sent(stack, tenant, drainer):
    app_id = tenant[0]
    call = {
        **MOESIF_CALL,
        "request": {**MOESIF_CALL["request"], "time": "0001-01-01T05:00:00+05:00"},
        "response": {**MOESIF_CALL["response"], "time": "9999-12-31T23:59:59.999999Z"},
    }
    send(drainer.sqs, drainer.queue_url, bodies("moesif", app_id, [call]))
    drain_all(drainer)
    assert query(
        stack.database_url,
        """SELECT request_time = '0001-01-01T00:00:00Z', response_time = '9999-12-31T23:59:59.999999Z',
                  request->>'time'
           FROM api_calls WHERE app_id = %s""",
        (app_id,),
    ) == [(True, True, "0001-01-01T00:00:00.000000Z")]
