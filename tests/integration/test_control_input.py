"""Input the control API cannot store or route is a 4xx in the route's own document shape, never
a 500: text Postgres refuses, secrets that cannot be encoded, ids of odd digits, unrouted URLs."""

import pytest

from services.control.app import create_app
from services.settings import ControlSettings
from tests.factories import person
from tests.helpers import client_for, logged_in


@pytest.fixture
def control(stack, names, provisioned):
    return client_for(create_app(stack.settings(ControlSettings, **names)))


def simple(body):
    return body["error"]["code"], body["error"]["message"]


def barchart(body):
    return body[0]["value"]["code"], body[0]["value"]["message"]


def formance(body):
    return body["errorCode"], body["errorMessage"]


def mews(key, **fields):
    return {"ClientToken": "c", "AccessToken": key, "Client": "c", "EntityType": "Event", **fields}


HTTP = "http://receiver.example"


@pytest.mark.parametrize(
    "path, body, field, shape",
    [
        ("/api/connector/v1/exports/add", lambda key: mews(key, Client="a\x00b"), "Client", simple),
        ("/api/connector/v1/exports/add", lambda key: mews(key, ClientToken="\udc00"), "ClientToken", simple),
        (
            "/reports",
            lambda key: {"filter": {"customer": "A\x00", "product": "B"}},
            "filter.customer",
            barchart,
        ),
        (
            "/reports",
            lambda key: {"filter": {"customer": "A", "product": "\ud800"}},
            "filter.product",
            barchart,
        ),
        (
            "/connectors",
            lambda key: {"driver": "http", "config": {"url": HTTP, "headers": {"X-A": "a\x00"}}},
            "config.headers",
            formance,
        ),
        (
            "/connectors",
            lambda key: {"driver": "s3", "config": {"bucket": "abc", "prefix": "p\ud800"}},
            "config.prefix",
            formance,
        ),
        (
            "/connectors",
            lambda key: {"driver": "http", "config": {"url": HTTP + "/\x00"}},
            "config.url",
            formance,
        ),
        ("/api/1/login", lambda key: {"email": "a\x00b@example.com"}, "email", simple),
    ],
)
def test_text_postgres_cannot_store_is_a_400_naming_the_field(control, tenant, path, body, field, shape):
    resp = control.post(path, json=body(tenant[1]), auth=(str(tenant[0]), tenant[1]))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    _, message = shape(resp.json)
    assert message.startswith(field), message


def test_an_app_name_postgres_cannot_store_is_a_400(control, db):
    pat = person(db)
    session = {"Cookie": f"session_key={logged_in(db, pat.email)}"}
    resp = control.post("/api/1/app", json={"org_id": pat.org_id, "app_name": "a\x00b"}, headers=session)
    assert resp.status_code == 400 and simple(resp.json)[1].startswith("app_name")


def test_secrets_that_cannot_be_encoded_match_nothing(control, db):
    pat = person(db)
    resp = control.post("/api/connector/v1/exports/getAll", json={**mews("sk_\ud800"), "ExportIds": []})
    assert resp.status_code == 401 and simple(resp.json)[0] == "UNAUTHORIZED"
    assert control.get("/api/1/user", json={"session_key": "\udfff"}).status_code == 403
    # An app named in digits that are not ASCII (int("²") fails) is no app.
    session = {"Cookie": f"session_key={logged_in(db, pat.email)}"}
    resp = control.get("/connectors", headers={**session, "X-Sluice-App": "²"})
    assert resp.status_code == 401 and formance(resp.json)[0] == "UNAUTHORIZED"


def test_an_unrouted_url_answers_in_the_shape_of_the_routes_it_falls_under(control, tenant):
    auth = (str(tenant[0]), tenant[1])
    assert formance(control.get("/connectors/a/b", auth=auth).json)[0] == "NOT_FOUND"
    assert formance(control.put("/pipelines", auth=auth).json)[0] == "METHOD_NOT_ALLOWED"
    assert barchart(control.get("/reports/JOB-1/availability/x", auth=auth).json)[0] == "NOT_FOUND"
    assert simple(control.get("/api/1/app/x").json)[0] == "NOT_FOUND"
    assert simple(control.get("/nowhere").json)[0] == "NOT_FOUND"
