"""Clients that try to turn the accounts API against someone else: a forged Host in the login
mail, logins that would lock another person out, wrong keys from behind a shared proxy, forged
forwarded headers. Through the real control app, Postgres, Redis and an SMTP sink."""

import uuid
from urllib.parse import urlsplit

import pytest

from services.control.accounts import host_allowed
from tests.factories import REPORT_REQUEST, person
from tests.helpers import an_address, client_for, control_app, log_in, verify_link, verify_url


def behind_proxy(control):
    """A client whose every request comes from one proxy's address (fresh per call: Redis keeps counts)."""
    return client_for(control)


def test_a_login_naming_a_host_the_operator_did_not_name_is_refused_and_mails_nothing(stack, outbox, db):
    client = client_for(control_app(stack, outbox))
    pat = person(db)
    resp = client.post("/api/1/login", json={"email": pat.email}, headers={"Host": "evil.test"})
    assert resp.status_code == 400 and resp.json["error"]["code"] == "BAD_REQUEST"
    assert "evil.test" in resp.json["error"]["message"]
    assert outbox.count_to(pat.email) == 0
    # The names `make run` serves work with no setting, on any port; the link points back there.
    for host in ("localhost:8001", "127.0.0.1:8001", "[::1]:8001", "localhost"):
        assert (
            client.post("/api/1/login", json={"email": pat.email}, headers={"Host": host}).status_code == 200
        )
    links = [verify_link_netloc(outbox.mail_to(pat.email, n)) for n in range(1, 5)]
    assert links == ["localhost:8001", "127.0.0.1:8001", "[::1]:8001", "localhost"]


def verify_link_netloc(mail: str) -> str:
    return urlsplit(verify_url(mail)).netloc


def test_the_operator_names_the_hosts_or_the_public_url(stack, outbox, db):
    pat = person(db)
    named = client_for(control_app(stack, outbox, allowed_hosts="sluice.example.com, sluice.internal:8443"))
    for host, status in (
        ("sluice.example.com", 200),
        ("SLUICE.example.com:9000", 200),
        ("sluice.internal:8443", 200),
        ("sluice.internal:8444", 400),
        ("localhost:8001", 400),  # the list replaces the local names
    ):
        resp = named.post("/api/1/login", json={"email": pat.email}, headers={"Host": host})
        assert resp.status_code == status, host
    assert verify_link_netloc(outbox.mail_to(pat.email, 1)) == "sluice.example.com"

    public = client_for(control_app(stack, outbox, public_url="https://sluice.example.com/"))
    resp = public.post("/api/1/login", json={"email": pat.email}, headers={"Host": "evil.test"})
    assert resp.status_code == 200  # the Host names nothing: the link is the public URL's
    assert verify_link(outbox.mail_to(pat.email, 4)).startswith("/api/1/verify/")
    assert verify_link_netloc(outbox.mail_to(pat.email, 4)) == "sluice.example.com"


@pytest.mark.parametrize(
    "host, allowed, expected",
    [
        ("localhost:8001", "localhost", True),
        ("[::1]", "[::1]", True),
        ("[::1]:8001", "[::1]", True),
        ("[::1]:8001", "[::1]:8002", False),
        ("evil.test", "localhost,127.0.0.1", False),
        ("localhost.evil.test", "localhost", False),
        ("127.0.0.1:80", " 127.0.0.1 ,", True),
        ("", "localhost", False),
    ],
)
def test_host_allow_list_entries_are_names_or_name_and_port(host, allowed, expected):
    assert host_allowed(host, allowed) is expected


def test_logins_for_someone_elses_email_never_lock_them_out(stack, outbox, db):
    control = control_app(stack, outbox)  # the defaults: 5 per (email, address), 50 per email
    victim = person(db)
    attacker = client_for(control)
    tries = [attacker.post("/api/1/login", json={"email": victim.email}).status_code for _ in range(30)]
    assert tries == [200] * 5 + [429] * 25
    key = log_in(client_for(control), outbox, victim.email, number=6)  # from the victim's own address
    assert client_for(control).get("/api/1/user", json={"session_key": key}).status_code == 200


def test_the_per_email_ceiling_takes_many_addresses_to_reach(stack, outbox, db):
    control = control_app(stack, outbox, login_limit_per_email_and_address=2, login_limit_per_email=6)
    victim = person(db)
    hammer = client_for(control)
    assert [hammer.post("/api/1/login", json={"email": victim.email}).status_code for _ in range(20)] == [
        200,
        200,
    ] + [429] * 18
    # Refused logins do not count towards the ceiling: one address added 2 of its 6.
    others = [client_for(control) for _ in range(3)]
    codes = [
        c.post("/api/1/login", json={"email": victim.email}).status_code for c in others for _ in range(2)
    ]
    assert codes == [200, 200, 200, 200, 429, 429]  # three addresses more fill it (2 + 4 = 6)


def test_100_wrong_keys_from_a_proxy_address_do_not_lock_out_valid_keys(stack, outbox, db):
    control = control_app(stack, outbox)  # no proxy setting: every client is the proxy's address
    pat, other = person(db), person(db)
    proxied = behind_proxy(control)
    wrong = [
        proxied.get("/connectors", auth=(str(pat.app_id), f"sk_wrong_{i}")).status_code for i in range(100)
    ]
    assert wrong == [401] * 100
    assert proxied.get("/connectors", auth=(str(pat.app_id), "sk_wrong_again")).status_code == 429
    # Every tenant's valid key still works from that same address.
    for who in (pat, other):
        assert proxied.get("/connectors", auth=(str(who.app_id), who.api_key)).status_code == 200
        assert (
            proxied.post("/reports", json=REPORT_REQUEST, auth=(str(who.app_id), who.api_key)).status_code
            == 200
        )


def test_forwarded_addresses_count_only_when_a_proxy_is_trusted(stack, outbox, db):
    pat = person(db)
    untrusted = behind_proxy(control_app(stack, outbox, auth_failure_limit=3))
    for _ in range(3):  # a guesser forging X-Forwarded-For stays one address
        forged = {"X-Forwarded-For": an_address()}
        assert untrusted.get("/pipelines", auth=(str(pat.app_id), "sk_x"), headers=forged).status_code == 401
    forged = {"X-Forwarded-For": an_address()}
    assert untrusted.get("/pipelines", auth=(str(pat.app_id), "sk_x"), headers=forged).status_code == 429

    trusted = behind_proxy(control_app(stack, outbox, auth_failure_limit=3, trusted_proxy_hops=1))
    guesser_address, honest_address = an_address(), an_address()
    guesser, honest = {"X-Forwarded-For": guesser_address}, {"X-Forwarded-For": honest_address}
    codes = [
        trusted.get("/pipelines", auth=(str(pat.app_id), "sk_x"), headers=guesser).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    assert trusted.get("/pipelines", auth=(str(pat.app_id), "sk_y"), headers=honest).status_code == 401
    # Only the last hop counts: what the client put before the proxy's own entry is ignored.
    spoofed = {"X-Forwarded-For": f"{honest_address}, {guesser_address}"}
    assert trusted.get("/pipelines", auth=(str(pat.app_id), "sk_x"), headers=spoofed).status_code == 429


def test_session_cookies_are_secure_behind_a_tls_proxy_or_with_an_https_public_url(stack, outbox, db):
    pat = person(db)
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": an_address(), "X-Forwarded-Host": "localhost"}

    def cookie(client) -> str:
        resp = client.post("/api/1/login", json={"email": pat.email}, headers=tls)
        assert resp.status_code == 200, resp.json
        return resp.headers["Set-Cookie"]

    behind_tls_proxy = behind_proxy(control_app(stack, outbox, trusted_proxy_hops=1))
    assert "Secure" in cookie(behind_tls_proxy)
    assert verify_link_netloc(outbox.mail_to(pat.email, 1)) == "localhost"
    assert "https://localhost/api/1/verify/" in outbox.mail_to(pat.email, 1)

    public_https = behind_proxy(control_app(stack, outbox, public_url="https://sluice.example.com"))
    assert "Secure" in cookie(public_https)

    not_trusted = behind_proxy(control_app(stack, outbox))  # forged headers change nothing
    assert "Secure" not in cookie(not_trusted)
    assert "http://localhost/api/1/verify/" in outbox.mail_to(pat.email, 3)  # not https


def test_unknown_emails_are_refused_the_forged_host_alike(stack, outbox):
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    client = client_for(control_app(stack, outbox))
    assert (
        client.post("/api/1/login", json={"email": email}, headers={"Host": "evil.test"}).status_code == 400
    )
    assert outbox.count_to(email) == 0
