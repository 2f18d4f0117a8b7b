"""A person's whole login on the real control API under gunicorn, with mail through an SMTP sink;
then the keys they manage stop working at the real ingest API within its key cache time.
"""

from urllib.parse import urlsplit

import requests

from devtools import devstack, mailsink
from services import tenancy
from tests.factories import barchart_event, person
from tests.helpers import wait_for

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
