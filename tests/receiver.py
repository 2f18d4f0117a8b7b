"""A real HTTP destination for pipeline tests: records every JSON array POSTed to it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Listens on a free port of 127.0.0.1; `fail_next` makes the next requests answer 500."""

    def __init__(self):
        self.batches: list[list[dict]] = []
        self.headers: list[dict] = []
        self.fail_next = 0
        self.delay = 0.0  # seconds each request takes, to keep a delivery in flight
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
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

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict]:
        with self.lock:
            return [e for batch in self.batches for e in batch]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
