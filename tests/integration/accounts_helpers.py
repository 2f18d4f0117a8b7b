"""Shared by the accounts tests: an SMTP sink on a free port, people in orgs, a full email login."""
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from services import devstack, mailsink, tenancy
from services.control.app import create_app
from services.settings import ControlSettings


@dataclass
class Outbox:
    directory: object
    port: int

    def mail_to(self, email: str, number: int = 1) -> str:
        return mailsink.wait_for_message(self.directory, email, number, timeout=10)


@pytest.fixture
def outbox(tmp_path):
    port = devstack.free_port()
    sink = mailsink.start(tmp_path / "outbox", port, announce=lambda line: None)
    yield Outbox(tmp_path / "outbox", port)
    sink.stop()


def control_app(stack, outbox, **overrides):
    return create_app(stack.settings(ControlSettings, smtp_port=outbox.port, **overrides))


def client_for(app, address: str | None = None):
    """A test client without a cookie jar, from its own client address (rate limits count per address)."""
    client = app.test_client(use_cookies=False)
    client.environ_base["REMOTE_ADDR"] = address or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
    return client


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
        key_id, key = tenancy.create_key(conn, app_id)
    return Person(email, user_id, org_id, app_id, key_id, key)


def verify_link(mail_text: str) -> str:
    """The path of the verification link in a login mail."""
    [link] = [url for url in mailsink.LINK.findall(mail_text) if "/verify/" in url]
    return urlsplit(link).path


def log_in(client, outbox, email: str, number: int = 1) -> str:
    """The whole login a person does: ask, open the mailed link, type the manual code.

    Returns the session key, which works from then on.
    """
    resp = client.post("/api/1/login", json={"email": email})
    assert resp.status_code == 200, resp.json
    path = verify_link(outbox.mail_to(email, number))
    assert client.get(path).status_code == 200
    done = client.post(path, data={"manual_code": resp.json["manual_code"]})
    assert done.status_code == 200, done.text
    return resp.json["session_key"]
