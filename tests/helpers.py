"""What tests do again and again: wait with a deadline, query Postgres, read queues, log a person in."""

import http.client
import json
import re
import threading
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors

from devtools import devstack, mailsink
from services import aws
from services.control import sessions
from services.database import Database
from services.settings import CommonSettings, WorkerSettings
from services.status import queue_depth
from services.worker.drain import Drainer
from shared import envelope


def wait_for(check, timeout: float = 30, what: str = "condition"):
    """Poll `check` until it returns truthy and return that value; fail at the deadline."""
    return devstack.wait_until(check, timeout, what)


def metric(text: str, name: str, **labels) -> float:
    """Sum of a metric's samples in Prometheus text whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def query(database_url: str, sql: str, params=()):
    # Closed here, not when collected: a failing test's traceback would keep it open.
    with closing(psycopg2.connect(database_url)) as conn, conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def refuses(database_url: str, sql: str, *params) -> bool:
    """Does Postgres refuse this statement as data it cannot take (a bad value, out of range)?"""
    with closing(psycopg2.connect(database_url)) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql, params)
        except (psycopg2.DataError, psycopg2.errors.ProgramLimitExceeded):
            return True
        return False


# --- queues ------------------------------------------------------------------------------------


def queued_envelopes(stack, names) -> list[dict]:
    """The groups of up to 10 messages waiting on the test's events queue (they stay in flight)."""
    sqs = aws.client(stack.settings(CommonSettings, **names), "sqs")
    url = aws.queue_url(sqs, names["events_queue"])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return [group for m in got for group in envelope.decode(m["Body"])]


def drain_all(drainer) -> None:
    """Drain until a receive that waited a second finds nothing."""
    while drainer.drain_once(wait_seconds=1):
        pass


def send(sqs, queue_url: str, message_bodies: list[str]) -> None:
    for body in message_bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def set_redrive(sqs, queue_url: str, dlq_url: str, max_receives: int, visibility_timeout: int) -> None:
    """A smaller receive count and a short visibility timeout, so poison reaches the DLQ in seconds."""
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}),
        },
    )


def depth(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    found = queue_depth(sqs, queue_url)
    return found["visible"], found["in_flight"]


@contextmanager
def redriven_drainer(stack, names, provisioned, max_receives: int, visibility_timeout: int):
    """A Drainer on the test's queue after its redrive policy and visibility timeout are set.

    The Drainer reads the visibility timeout when it is built (to pace its visibility extender),
    so it is built after the change.
    """
    settings = stack.settings(WorkerSettings, **names)
    db = Database(stack.database_url, maxconn=2)
    try:
        set_redrive(
            Drainer(settings, db).sqs,
            provisioned["queue_url"],
            provisioned["dlq_url"],
            max_receives=max_receives,
            visibility_timeout=visibility_timeout,
        )
        yield Drainer(settings, db)
    finally:
        db.close()


class SqsProxy:
    """A pass-through proxy to moto's SQS that behaves as a real SQS may and moto does not.

    `hold()` keeps SendMessageBatch calls waiting until `release()` (a slow SQS: later requests
    pile up behind the call in flight). Entries whose message has a group `refuse(group)` is true
    for are answered failed inside a 200 with SenderFault, the rest of the call is stored.
    `calls` lists each SendMessageBatch call's entry count; `held` counts calls waiting now.
    """

    def __init__(self, upstream: str, refuse=lambda group: False):
        self.refuse = refuse
        self.calls: list[int] = []
        self.held = 0
        self._open = threading.Event()
        self._open.set()
        up = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failed = []
                if self.headers.get("X-Amz-Target", "").endswith(".SendMessageBatch"):
                    body, failed = proxy._send_message_batch(json.loads(body))
                status, answer = proxy._forward(self.path, self.headers, body, up.hostname, up.port)
                if failed:
                    answer = json.dumps({**json.loads(answer or b"{}"), "Failed": failed}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _send_message_batch(self, call: dict) -> tuple[bytes, list[dict]]:
        self.calls.append(len(call["Entries"]))
        self.held += 1
        self._open.wait(30)
        self.held -= 1
        refused = [e for e in call["Entries"] if any(map(self.refuse, envelope.decode(e["MessageBody"])))]
        call["Entries"] = [e for e in call["Entries"] if e not in refused]
        failed = [
            {"Id": e["Id"], "SenderFault": True, "Code": "InvalidParameterValue", "Message": "refused"}
            for e in refused
        ]
        return (json.dumps(call).encode() if call["Entries"] else b""), failed

    @staticmethod
    def _forward(path, headers, body: bytes, host, port) -> tuple[int, bytes]:
        if not body:  # every entry refused: nothing to pass on
            return 200, b'{"Successful": []}'
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
            conn.request("POST", path, body=body, headers=forwarded)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


# --- accounts ------------------------------------------------------------------------------------


@dataclass
class Outbox:
    """The SMTP sink's directory: login mail lands here as files."""

    directory: object
    port: int

    def mail_to(self, email: str, number: int = 1) -> str:
        return mailsink.wait_for_message(self.directory, email, number, timeout=10)

    def count_to(self, email: str) -> int:
        """Messages to `email` held now: the sink writes each before SMTP answers, so before the
        login answers too."""
        return len(list(Path(self.directory).glob(f"*-{email.lower()}.eml")))


def control_app(stack, outbox, **overrides):
    from services.control.app import create_app
    from services.settings import ControlSettings

    return create_app(stack.settings(ControlSettings, smtp_port=outbox.port, **overrides))


def an_address() -> str:
    """A client address of its own: rate limits count per address, in a Redis all tests share."""
    n = uuid.uuid4().int
    return f"10.{n % 250}.{n // 250 % 250}.{n // 62500 % 250 + 1}"


def client_for(app, address: str | None = None):
    """A test client without a cookie jar, from its own client address (rate limits count per address)."""
    client = app.test_client(use_cookies=False)
    client.environ_base["REMOTE_ADDR"] = address or an_address()
    return client


def verify_url(mail_text: str) -> str:
    """The verification link in a login mail."""
    [link] = [url for url in mailsink.LINK.findall(mail_text) if "/verify/" in url]
    return link


def verify_link(mail_text: str) -> str:
    """The path of the verification link in a login mail."""
    return urlsplit(verify_url(mail_text)).path


def logged_in(db, email: str) -> str:
    """A verified session key for a user, made through the login functions (no mail, no HTTP)."""
    with db.connection() as conn:
        login = sessions.start_login(conn, email, 900)
        assert sessions.verify(conn, login.verify_token, login.manual_code, 5, 3600) == sessions.VERIFIED
    return login.session_key


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
