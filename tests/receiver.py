"""Real HTTP servers for pipeline tests.

`Receiver` is a destination that records every JSON array POSTed to it. It can also misbehave the
way a hostile or broken destination does: answer slowly, answer with something else than 204,
trickle its answer a byte at a time, or never answer at all. `AwsRecorder` stands between the
worker and the moto server and notes each AWS call and the key that signed it.
"""

import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Receiver:
    """Listens on a free port of 127.0.0.1; `fail_next` makes the next requests answer 500."""

    def __init__(self):
        self.batches: list[list[dict]] = []
        self.headers: list[dict] = []
        self.requests = 0  # every POST that arrived, answered or not
        self.fail_next = 0
        self.delay = 0.0  # seconds each request takes, to keep a delivery in flight
        self.answer: tuple[int, dict, bytes] | None = None  # (status, headers, body) instead of 204
        self.then_hang = False  # after `answer`, keep the connection open and say nothing more
        self.trickle = 0.0  # if set: a status line, then one header byte every `trickle` seconds
        self.hang = False  # take the request, never answer
        self.lock = threading.Lock()
        self.closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                if receiver.hang:
                    receiver.closing.wait()
                    return
                if receiver.trickle:
                    self.trickle_forever()
                    return
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                if receiver.answer:
                    self.answer(*receiver.answer)
                    return
                with receiver.lock:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    receiver.batches.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def answer(self, status, headers, body):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body) * (1000 if receiver.then_hang else 1)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if receiver.then_hang:
                    receiver.closing.wait()

            def trickle_forever(self):
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Trickle: ")
                    while not receiver.closing.wait(receiver.trickle):
                        self.wfile.write(b"a")
                        self.wfile.flush()
                except OSError:
                    pass  # the sender gave up

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict]:
        with self.lock:
            return [e for batch in self.batches for e in batch]

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


class AwsRecorder:
    """A pass-through to the moto server at `upstream` that notes every call: what it asked (the
    form parameters of a query API such as STS, else method and path), the access key id that
    signed it, and the answer's body."""

    def __init__(self, upstream: str):
        self.calls: list[dict] = []
        target = urlsplit(upstream)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # botocore waits for "100 Continue" before an object's body

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                resp = conn.getresponse()
                answer = resp.read()
                signer = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
                form = parse_qs(body.decode(errors="replace")) if body[:7] == b"Action=" else {}
                with recorder.lock:
                    recorder.calls.append(
                        {
                            "action": form.get("Action", [f"{self.command} {self.path}"])[0],
                            "params": {k: v[0] for k, v in form.items()},
                            "key": signer[1] if signer else None,
                            "answer": answer.decode(errors="replace"),
                        }
                    )
                self.send_response(resp.status)
                for name, value in resp.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

            def log_message(self, *args):
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
