"""A person's whole login on the real control API under gunicorn, with mail through an SMTP sink;
then the keys they manage stop working at the real ingest API within its key cache time.
"""

from urllib.parse import urlsplit

import requests

from devtools import devstack, mailsink
from services import tenancy
from tests.factories import barchart_event, person
from tests.helpers import an_address, verify_url, wait_for

EVENT = barchart_event()


def test_login_by_mail_then_revoked_keys_and_deleted_apps_stop_working_at_ingest(services, db, tmp_path):
    port = devstack.free_port()
    sink = mailsink.start(tmp_path / "outbox", port, announce=lambda line: None)
    try:
        control = services.control(SLUICE_SMTP_PORT=str(port))
        ingest = services.ingest(SLUICE_KEY_CACHE_SECONDS="1")
        pat = person(db)

        # The person: asks to log in, opens the mailed link, types the manual code.
        browser = requests.Session()
        answer = browser.post(control.url + "/api/1/login", json={"email": pat.email}, timeout=10).json()
        mail = mailsink.wait_for_message(tmp_path / "outbox", pat.email)
        [link] = [url for url in mailsink.LINK.findall(mail) if "/verify/" in url]
        assert urlsplit(link).netloc == urlsplit(control.url).netloc
        page = requests.get(link, timeout=10)
        assert page.status_code == 200 and "manual_code" in page.text
        assert requests.post(link, data={"manual_code": answer["manual_code"]}, timeout=10).status_code == 200
        me = browser.get(control.url + "/api/1/user", timeout=10)  # the session cookie from login
        assert me.status_code == 200 and me.json()["email"] == pat.email

        # They make an app and a key, and events flow.
        app_id = browser.post(
            control.url + "/api/1/app", json={"org_id": pat.org_id, "app_name": "shop"}, timeout=10
        ).json()["app_id"]
        key = browser.post(f"{control.url}/api/1/app/{app_id}/key", timeout=10).json()

        def ingest_status(app, api_key):
            return requests.post(
                ingest.url + "/events", json=[EVENT], auth=(str(app), api_key), timeout=10
            ).status_code

        assert ingest_status(app_id, key["api_key"]) == 200
        assert (
            browser.delete(f"{control.url}/api/1/app/{app_id}/key/{key['key_id']}", timeout=10).status_code
            == 200
        )
        wait_for(lambda: ingest_status(app_id, key["api_key"]) == 401, 15, "revoked key refused at ingest")

        assert ingest_status(pat.app_id, pat.api_key) == 200
        assert browser.delete(f"{control.url}/api/1/app/{pat.app_id}", timeout=10).status_code == 200
        wait_for(lambda: ingest_status(pat.app_id, pat.api_key) == 401, 15, "deleted app's key refused")
        with db.connection() as conn:
            assert [a["app_id"] for a in tenancy.list_apps(conn, pat.org_id)] == [app_id]

        assert browser.post(control.url + "/api/1/logout", timeout=10).status_code == 200
        assert browser.get(control.url + "/api/1/user", timeout=10).status_code == 403
    finally:
        sink.stop()


def test_forwarded_headers_count_only_behind_a_trusted_proxy_under_gunicorn(services, db, tmp_path):
    port = devstack.free_port()
    sink = mailsink.start(tmp_path / "outbox", port, announce=lambda line: None)
    one = {"SLUICE_SMTP_PORT": str(port), "SLUICE_WEB_WORKERS": "1", "SLUICE_AUTH_FAILURE_LIMIT": "3"}
    try:
        direct = services.control(**one)
        proxied = services.control(**one, SLUICE_TRUSTED_PROXY_HOPS="1")
        pat = person(db)
        tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": an_address()}

        def login(control):
            resp = requests.post(
                control.url + "/api/1/login", json={"email": pat.email}, headers=tls, timeout=10
            )
            assert resp.status_code == 200, resp.text
            return resp.headers["Set-Cookie"]

        assert "Secure" not in login(direct)  # anyone can send those headers: they are ignored
        assert "Secure" in login(proxied)
        link = verify_url(mailsink.wait_for_message(tmp_path / "outbox", pat.email, 2))
        assert link.startswith(f"https://127.0.0.1:{proxied.port}/api/1/verify/")

        def wrong_key(control, client_address):
            return requests.get(
                control.url + "/pipelines",
                auth=(str(pat.app_id), "sk_wrong"),
                headers={"X-Forwarded-For": client_address},
                timeout=10,
            ).status_code

        # Behind the trusted proxy each client is counted on its own address.
        guesser = an_address()
        assert [wrong_key(proxied, guesser) for _ in range(4)] == [401, 401, 401, 429]
        assert wrong_key(proxied, an_address()) == 401
        # Direct, every request is 127.0.0.1's, whatever the header says: forging it escapes nothing.
        assert [wrong_key(direct, an_address()) for _ in range(4)][-1] == 429
    finally:
        sink.stop()
