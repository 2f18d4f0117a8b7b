"""http: POST each batch as a JSON array to the connector's URL; any non-2xx answer is a failure.

Each delivery is one connection, to addresses the destination policy (services/egress.py) allowed a
moment before: the URL's host is resolved, every address it has now must be allowed, and the socket
connects to those very addresses, so no second lookup can swap them (DNS rebinding). TLS still
verifies the certificate for the URL's host name, which SNI names.

One deadline bounds the whole delivery: lookup, connect, sending and the answer. A socket timeout
bounds each read, so a destination that answers a byte at a time would never reach it; a watchdog
shuts the connection down at the deadline instead. Redirects are not followed. The answer's status
line and headers are read (http.client caps them), of a 2xx nothing more, and of any other at most
ERROR_BODY_BYTES of the body, for lastError.
"""

import http.client
import logging
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from services import egress
from services.worker.drivers.base import DeliveryFailed, Driver
from shared.schemas.pipelines import sendable_headers

log = logging.getLogger("sluice.pipelines")

ERROR_BODY_BYTES = 256
# lastError for every failure before an HTTP answer: the same whether the connection was refused,
# reset or timed out, so that a connector cannot tell an open port from a closed one.
NO_ANSWER = "no HTTP answer before the deadline (the connection was refused, dropped or too slow)"


class HttpDriver(Driver):
    def __init__(self, config, settings, pipeline_id, app_id):
        super().__init__(config, settings, pipeline_id, app_id)
        url = urlsplit(config["url"])
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.tls = ssl.create_default_context() if url.scheme == "https" else None
        self.headers = {
            **sendable_headers(config.get("headers", {})),
            "Content-Type": "application/json",
            "X-Sluice-Pipeline": pipeline_id,
        }
        self.policy = egress.policy(settings)

    def send(self, docs, first, deadline):
        body = ("[" + ",".join(docs) + "]").encode()
        conn = _Connection(self.host, self.port, self._allowed_addresses(deadline), self.tls, deadline)
        watchdog = threading.Timer(deadline - time.monotonic(), conn.cut)
        watchdog.start()
        try:
            conn.request("POST", self.target, body=body, headers=self.headers)
            resp = conn.getresponse()
            excerpt = b"" if 200 <= resp.status < 300 else resp.read(ERROR_BODY_BYTES)
            if conn.was_cut:  # http.client takes the end of the stream for the end of the headers
                raise TimeoutError("deadline passed")
        except ssl.SSLCertVerificationError as exc:
            message = f"TLS: the certificate of {self.host} did not verify: {exc.verify_message}"
            raise DeliveryFailed(message) from None
        except (OSError, http.client.HTTPException) as exc:
            log.info("pipeline %s: %s:%s: %r", self.pipeline_id, self.host, self.port, exc)
            raise DeliveryFailed(NO_ANSWER) from None
        finally:
            watchdog.cancel()
            watchdog.join()
            conn.close()
        if 300 <= resp.status < 400:
            raise DeliveryFailed(f"HTTP {resp.status}: redirects are not followed")
        if not 200 <= resp.status < 300:
            raise DeliveryFailed(f"HTTP {resp.status} {excerpt!r}")

    def _allowed_addresses(self, deadline: float) -> list:
        """The host's addresses now, if the policy allows every one of them."""
        try:
            addresses = egress.resolve(self.host, self.port)
        except OSError:
            raise DeliveryFailed(f"cannot resolve {self.host}") from None
        for address in addresses:
            reason = egress.refusal(self.policy, address, self.port)
            if reason:
                log.warning("pipeline %s: %s (%s) refused: %s", self.pipeline_id, self.host, address, reason)
                raise DeliveryFailed(f"refused by policy: {self.host} {egress.REFUSED}")
        if time.monotonic() >= deadline:  # the lookup took it all
            raise DeliveryFailed(NO_ANSWER)
        return addresses


class _Connection(http.client.HTTPConnection):
    """HTTP or HTTPS to addresses checked beforehand; `cut` (from another thread) ends it at once."""

    def __init__(self, host: str, port: int, addresses: list, tls: ssl.SSLContext | None, deadline: float):
        super().__init__(host, port)
        self.addresses, self.tls, self.deadline = addresses, tls, deadline
        self._lock = threading.Lock()
        self._cut = False
        self._handle: socket.socket | None = None  # a second descriptor of the socket, for cut()

    def connect(self):
        sock, error = None, None
        for address in self.addresses:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                sock = socket.create_connection((str(address), self.port), remaining)
                break
            except OSError as exc:
                error = exc
        if sock is None:
            raise error or TimeoutError("deadline passed")
        sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        with self._lock:
            if self._cut:
                sock.close()
                raise TimeoutError("deadline passed")
            self._handle = sock.dup()  # TLS takes the socket's own descriptor over; this one stays ours
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock

    @property
    def was_cut(self) -> bool:
        with self._lock:
            return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            if self._handle is not None:
                try:
                    self._handle.shutdown(socket.SHUT_RDWR)  # every read and write on it fails now
                except OSError:
                    pass

    def close(self):
        super().close()
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
