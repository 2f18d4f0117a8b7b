"""Accounts (Data Cortex /api/1/*) through the real control app, Postgres, Redis and an SMTP sink."""

import uuid

import pytest

from services import tenancy
from services.ingest.app import create_app as create_ingest
from services.settings import IngestSettings
from tests.factories import REPORT_REQUEST, barchart_event, person
from tests.helpers import client_for, control_app, log_in, verify_link

EVENT = barchart_event()


@pytest.fixture
def control(stack, outbox):
    return control_app(stack, outbox)


def test_login_mails_a_link_and_the_session_works_only_after_the_code_is_entered(control, outbox, db):
    pat = person(db)
    client = client_for(control)
    resp = client.post("/api/1/login", json={"email": pat.email.upper()})
    assert resp.status_code == 200
    body = resp.json
    assert body["result"] == "new_browser" and body["session_key"] and body["manual_code"]
    key = body["session_key"]
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 403  # not verified yet

    mail = outbox.mail_to(pat.email)
    path = verify_link(mail)
    assert body["manual_code"] not in mail and key not in mail  # the mail alone logs nobody in
    page = client.get(path)
    assert page.status_code == 200 and 'name="manual_code"' in page.text
    wrong = "000000" if body["manual_code"] != "000000" else "111111"
    assert client.post(path, data={"manual_code": wrong}).status_code == 400
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 403
    done = client.post(path, data={"manual_code": body["manual_code"]})
    assert done.status_code == 200 and "signed in" in done.text

    for how in (
        {"json": {"session_key": key}},
        {"headers": {"Cookie": f"session_key={key}"}},
        {"data": {"session_key": key}},
    ):
        user = client.get("/api/1/user", **how)
        assert user.status_code == 200, how
        assert user.json == {
            "user_id": pat.user_id,
            "email": pat.email,
            "display_name": "Pat Example",
            "org_list": [{"org_id": pat.org_id, "name": user.json["org_list"][0]["name"]}],
        }
    assert client.post(path, data={"manual_code": body["manual_code"]}).status_code == 410  # used once

    assert client.post("/api/1/logout", json={"session_key": key}).status_code == 200
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 403
    assert client.post("/api/1/logout", json={"session_key": key}).status_code == 403


def test_login_sets_the_session_cookie_a_browser_sends_back(control, outbox, db):
    pat = person(db)
    browser = control.test_client()  # keeps cookies
    browser.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    resp = browser.post("/api/1/login", json={"email": pat.email})
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    browser.post(verify_link(outbox.mail_to(pat.email)), data={"manual_code": resp.json["manual_code"]})
    assert browser.get("/api/1/user").json["user_id"] == pat.user_id
    assert browser.post("/api/1/logout").status_code == 200
    assert browser.get("/api/1/user").status_code == 403


def test_an_unknown_email_gets_the_same_answer_but_no_usable_session(control, outbox):
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    client = client_for(control)
    resp = client.post("/api/1/login", json={"email": email})
    assert resp.status_code == 200 and set(resp.json) == {"result", "session_key", "manual_code"}
    assert resp.json["result"] == "new_browser"
    mail = outbox.mail_to(email)
    assert "no account" in mail and "/verify/" not in mail
    assert client.get("/api/1/user", json={"session_key": resp.json["session_key"]}).status_code == 403


def test_repeated_wrong_codes_lock_that_login(stack, outbox, db):
    client = client_for(control_app(stack, outbox, login_max_code_attempts=3))
    pat = person(db)
    resp = client.post("/api/1/login", json={"email": pat.email})
    path = verify_link(outbox.mail_to(pat.email))
    code = resp.json["manual_code"]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert [client.post(path, data={"manual_code": wrong}).status_code for _ in range(3)] == [400, 400, 410]
    locked = client.post(path, data={"manual_code": code})
    assert locked.status_code == 410 and "locked" in locked.text
    assert client.get("/api/1/user", json={"session_key": resp.json["session_key"]}).status_code == 403
    # A new login is not affected by the locked one.
    key = log_in(client, outbox, pat.email, number=2)
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 200


def test_links_and_codes_expire(stack, outbox, db):
    client = client_for(control_app(stack, outbox, login_ttl_seconds=0))
    pat = person(db)
    resp = client.post("/api/1/login", json={"email": pat.email})
    path = verify_link(outbox.mail_to(pat.email))
    assert client.get(path).status_code == 410
    assert client.post(path, data={"manual_code": resp.json["manual_code"]}).status_code == 410
    assert client.get("/api/1/user", json={"session_key": resp.json["session_key"]}).status_code == 403
    assert client.get("/api/1/verify/not-a-token").status_code == 404


def test_apps_and_keys_are_listed_created_revoked_and_deleted(stack, names, provisioned, control, outbox, db):
    ingest = create_ingest(stack.settings(IngestSettings, **names, key_cache_seconds=0)).test_client()
    pat = person(db)
    client = client_for(control)
    session = {"session_key": log_in(client, outbox, pat.email)}

    listed = client.get(f"/api/1/app?org_id={pat.org_id}", json=session)
    assert listed.status_code == 200
    [app] = listed.json["app_list"]
    assert app["app_id"] == pat.app_id and app["name"] == "app"
    assert app["api_key_list"] == [pat.api_key[:10] + "..."] and pat.api_key not in listed.text
    assert app["api_keys"][0]["key_id"] == pat.key_id

    made = client.post("/api/1/app", json={**session, "org_id": pat.org_id, "app_name": "billing"})
    assert made.status_code == 200
    via_get = client.get(f"/api/1/app?org_id={pat.org_id}&app_name=web", json=session)
    assert via_get.status_code == 200
    new_app = made.json["app_id"]
    listed = client.get("/api/1/app", json={**session, "org_id": str(pat.org_id)}).json["app_list"]
    assert [(a["app_id"], a["name"]) for a in listed] == [
        (pat.app_id, "app"),
        (new_app, "billing"),
        (via_get.json["app_id"], "web"),
    ]

    key = client.post(f"/api/1/app/{new_app}/key", json=session).json
    assert key["api_key"].startswith(key["prefix"]) and len(key["api_key"]) > 40
    auth = (str(new_app), key["api_key"])
    assert ingest.post("/events", json=[EVENT], auth=auth).status_code == 200

    assert client.delete(f"/api/1/app/{new_app}/key/{key['key_id']}", json=session).status_code == 200
    assert ingest.post("/events", json=[EVENT], auth=auth).status_code == 401
    assert client.delete(f"/api/1/app/{new_app}/key/{key['key_id']}", json=session).status_code == 404

    old_auth = (str(pat.app_id), pat.api_key)
    assert ingest.post("/events", json=[EVENT], auth=old_auth).status_code == 200
    assert client.delete(f"/api/1/app/{pat.app_id}", json=session).status_code == 200
    assert ingest.post("/events", json=[EVENT], auth=old_auth).status_code == 401
    remaining = client.get(f"/api/1/app?org_id={pat.org_id}", json=session).json["app_list"]
    assert pat.app_id not in [a["app_id"] for a in remaining]
    assert client.delete(f"/api/1/app/{pat.app_id}", json=session).status_code == 403


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("post", "/api/1/login", {}, 400),
        ("post", "/api/1/login", {"email": "not-an-email"}, 400),
        ("post", "/api/1/login", {"email": ["a@b.example"]}, 400),
        ("get", "/api/1/app", {}, 400),
        ("get", "/api/1/app?org_id=abc", {}, 400),
        ("get", "/api/1/app?org_id=99999999999999999999999", {}, 400),
        ("post", "/api/1/app", {"org_id": True, "app_name": "x"}, 400),
        ("post", "/api/1/app", {"org_id": "ORG", "app_name": ""}, 400),
        ("delete", "/api/1/app/99999999999999999999999", {}, 403),
        ("delete", "/api/1/app/12/key/99999999999999999999999", {}, 403),
    ],
)
def test_bad_input_gets_a_4xx_in_the_error_shape(control, outbox, db, method, path, body, status):
    pat = person(db)
    client = client_for(control)
    session = {} if path == "/api/1/login" else {"session_key": log_in(client, outbox, pat.email)}
    if body.get("org_id") == "ORG":
        body = {**body, "org_id": pat.org_id}
    resp = getattr(client, method)(path, json={**session, **body})
    assert resp.status_code == status, resp.json
    assert set(resp.json["error"]) == {"code", "message"}


def test_creating_an_app_needs_a_name(control, outbox, db):
    pat = person(db)
    client = client_for(control)
    session = {"session_key": log_in(client, outbox, pat.email)}
    resp = client.post("/api/1/app", json={**session, "org_id": pat.org_id})
    assert resp.status_code == 400 and "app_name" in resp.json["error"]["message"]
    with db.connection() as conn:
        assert len(tenancy.list_apps(conn, pat.org_id)) == 1


def test_logins_are_rate_limited_per_email_and_address_with_retry_after(stack, outbox, db):
    control = control_app(stack, outbox, login_limit_per_email_and_address=2)
    client = client_for(control)
    pat = person(db)
    codes = [client.post("/api/1/login", json={"email": pat.email}).status_code for _ in range(2)]
    limited = client.post("/api/1/login", json={"email": pat.email})
    assert codes == [200, 200] and limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 900
    assert limited.json["error"]["code"] == "TOO_MANY_REQUESTS"
    other = person(db)
    assert client.post("/api/1/login", json={"email": other.email}).status_code == 200
    assert client_for(control).post("/api/1/login", json={"email": pat.email}).status_code == 200


def test_wrong_credentials_are_rate_limited_per_client_address_but_right_ones_always_work(stack, outbox, db):
    control = control_app(stack, outbox, auth_failure_limit=3)
    pat = person(db)
    guesser, honest = client_for(control), client_for(control)
    key = log_in(honest, outbox, pat.email)
    guesses = [guesser.get("/api/1/user", json={"session_key": f"guess-{i}"}).status_code for i in range(6)]
    assert guesses == [403, 403, 403, 429, 429, 429]  # and they keep getting 429
    blocked = guesser.get("/api/1/user", json={"session_key": "guess-again"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # A right key works from that address too: checked first, it is never refused for others' guesses.
    assert guesser.get("/api/1/user", json={"session_key": key}).status_code == 200
    assert honest.get("/api/1/user", json={"session_key": key}).status_code == 200


def test_login_answers_503_when_mail_cannot_be_sent_and_keeps_no_session(stack, db):
    from devtools import devstack
    from tests.helpers import Outbox

    closed = Outbox(None, devstack.free_port())  # nothing listens there
    client = client_for(control_app(stack, closed))
    pat = person(db)
    resp = client.post("/api/1/login", json={"email": pat.email})
    assert resp.status_code == 503 and resp.json["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(resp.headers["Retry-After"]) > 0  # as every 503 the document lists
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM login_sessions WHERE user_id = %s", (pat.user_id,))
        assert cur.fetchone()[0] == 0


def test_logins_keep_working_while_redis_is_away(stack, outbox, db):
    from devtools import devstack

    control = control_app(stack, outbox, redis_url=f"redis://127.0.0.1:{devstack.free_port()}/0")
    pat = person(db)
    client = client_for(control)
    key = log_in(client, outbox, pat.email)  # limits are not counted, and nothing fails
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 200


def test_a_session_key_stops_working_when_the_session_expires(stack, outbox, db):
    client = client_for(control_app(stack, outbox, session_max_age_seconds=0))
    pat = person(db)
    key = log_in(client, outbox, pat.email)
    assert client.get("/api/1/user", json={"session_key": key}).status_code == 403


def test_a_login_form_body_works_too_and_overlong_emails_are_refused(control, outbox, db):
    pat = person(db)
    client = client_for(control)
    assert client.post("/api/1/login", data={"email": pat.email}).status_code == 200
    assert "/verify/" in outbox.mail_to(pat.email)
    assert client.post("/api/1/login", data={"email": "a" * 250 + "@example.com"}).status_code == 400


def test_a_key_guesser_is_refused_in_each_documents_own_error_shape(stack, outbox, db):
    control = control_app(stack, outbox, auth_failure_limit=2)
    pat = person(db)
    guesser = client_for(control)
    for i in range(2):
        guesser.get("/connectors", auth=(str(pat.app_id), f"sk_guess_{i}"))
    wrong = (str(pat.app_id), "sk_guess_again")
    reports = guesser.post("/reports", json=REPORT_REQUEST, auth=wrong)
    assert reports.status_code == 429 and int(reports.headers["Retry-After"]) > 0
    assert reports.json[0]["value"]["code"] == "TOO_MANY_REQUESTS"  # Barchart's shape
    pipelines = guesser.get("/pipelines", auth=wrong)
    assert pipelines.status_code == 429 and int(pipelines.headers["Retry-After"]) > 0
    assert pipelines.json["errorCode"] == "TOO_MANY_REQUESTS"  # Formance's shape
    exports = guesser.post(
        "/api/connector/v1/exports/getAll",
        json={"ClientToken": "c", "AccessToken": "sk_guess_again", "Client": "c", "ExportIds": []},
    )
    assert exports.status_code == 429 and exports.json["error"]["code"] == "TOO_MANY_REQUESTS"
    # The app's own key still works from that address, on every API.
    right = (str(pat.app_id), pat.api_key)
    assert guesser.get("/pipelines", auth=right).status_code == 200
    assert guesser.post("/reports", json=REPORT_REQUEST, auth=right).status_code == 200
