"""A real HTTP destination for pipeline tests: records every JSON array POSTed to it.

It can also misbehave the way a hostile or broken destination does: answer slowly, answer with
something else than 204, trickle its answer a byte at a time, or never answer at all.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
