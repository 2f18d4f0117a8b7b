"""Sending envelopes to SQS: 200 only after every entry is accepted.

Concurrent requests in one process share SendMessageBatch calls (group commit): a request hands
its message bodies to the process's sender threads and waits until SQS has accepted all of them.
A sender takes what is waiting (up to 10 entries and the request size limit). A call that is not
full waits up to `sqs_linger_ms` for more while fewer requests wait than the process has been
serving at once (views call expect() and done()). A lone request is sent at once; under load one
call carries many requests' messages, which is what keeps SQS requests (and their cost, in SQS
and in our CPU) near the minimum that the bytes need.
"""

import collections
import os
import threading
import time

from prometheus_client import Counter, Histogram

from services import aws

SQS_REQUESTS = Counter("sluice_ingest_sqs_requests", "SendMessageBatch calls made")
SQS_ENTRIES_PER_CALL = Histogram(
    "sluice_ingest_sqs_entries_per_call", "messages per SendMessageBatch call", buckets=(1, 2, 3, 5, 8, 9, 10)
)
SQS_ENTRY_RETRIES = Counter("sluice_ingest_sqs_entry_retries", "entries sent again after failing")
MAX_ENTRIES = 10  # SendMessageBatch's limit


class QueueUnavailable(Exception):
    """SQS did not accept every entry in time; the caller answers 503."""


class _Request:
    """One producer request's share of the work: how many entries are still unsent."""

    def __init__(self, count: int, deadline: float):
        self._lock = threading.Lock()  # several sender threads may carry one request's entries
        self.remaining = count
        self.deadline = deadline
        self.error: str | None = None
        self.done = threading.Event()

    def entry_sent(self) -> None:
        with self._lock:
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.done.set()


class _Entry:
    __slots__ = ("attempts", "body", "owner", "size")

    def __init__(self, body: str, owner: _Request):
        self.body, self.owner, self.attempts = body, owner, 0
        self.size = len(body.encode())


class EventQueue:
    """The events queue as the ingest API sees it: send(bodies) returns once SQS holds them all."""

    def __init__(self, settings, client=None, attempts: int = 4):
        self._settings = settings
        self._attempts = attempts
        self._deadline = settings.sqs_send_deadline_seconds
        self._max_request_bytes = settings.message_max_bytes
        self._senders = max(1, settings.sqs_senders)
        self._sqs = client
        self._url = None
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._cond = threading.Condition()
        self._pid = None  # sender threads belong to the process that started them (gunicorn forks)
        self._linger = settings.sqs_linger_ms / 1000
        self._in_progress = 0  # requests in this process between expect() and done()
        self._peak = 0  # the most in progress at once since a sender last took a group
        self.requests_made = 0

    def _client(self):
        if self._sqs is None:
            # Short timeouts: a request waits for SQS at most sqs_send_deadline_seconds in all.
            self._sqs = aws.client(
                self._settings,
                "sqs",
                connect_timeout=2,
                read_timeout=5,
                retries={"max_attempts": 2, "mode": "standard"},
            )
        if self._url is None:
            self._url = aws.queue_url(self._sqs, self._settings.events_queue)
        return self._sqs, self._url

    def ping(self) -> None:
        sqs, url = self._client()
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])

    def expect(self) -> None:
        """A producer request has started in this process: it will probably send soon."""
        with self._cond:
            self._in_progress += 1
            self._peak = max(self._peak, self._in_progress)

    def done(self) -> None:
        """That request has ended, sent or not."""
        with self._cond:
            self._in_progress -= 1
            self._cond.notify_all()

    def send(self, bodies: list[str]) -> None:
        """Return once SQS has accepted every body; raise QueueUnavailable if it did not in time."""
        self._start_senders()
        request = _Request(len(bodies), time.monotonic() + self._deadline)
        with self._cond:
            self._waiting.extend(_Entry(body, request) for body in bodies)
            self._cond.notify_all()
        if bodies and not request.done.wait(self._deadline + 1):
            request.fail("timed out waiting for SQS")
        if request.error is not None:
            raise QueueUnavailable(request.error)

    def _start_senders(self) -> None:
        if self._pid == os.getpid():
            return
        with self._cond:
            if self._pid != os.getpid():
                self._waiting.clear()  # inherited from a parent process: not ours to send
                for i in range(self._senders):
                    threading.Thread(target=self._sender, name=f"sqs-sender-{i}", daemon=True).start()
                self._pid = os.getpid()

    def _sender(self) -> None:
        while True:
            entries = self._next_group()
            try:
                self._send_group(entries)
            except Exception as exc:  # never let a sender die: its requests would hang
                for entry in entries:
                    entry.owner.fail(f"{type(exc).__name__}: {exc}")

    def _next_group(self) -> list[_Entry]:
        """Block until something waits, then take up to 10 entries that fit one request."""
        with self._cond:
            while not self._waiting:
                self._cond.wait()
            until = time.monotonic() + self._linger
            while len(self._waiting) < MAX_ENTRIES and self._others_busy() and time.monotonic() < until:
                self._cond.wait(until - time.monotonic())
            self._peak = self._in_progress
            group, size = [], 0
            while self._waiting and len(group) < MAX_ENTRIES:
                entry = self._waiting[0]
                if group and size + entry.size > self._max_request_bytes:
                    break
                self._waiting.popleft()
                if entry.owner.error is None:  # its request already gave up: sending is pointless
                    group.append(entry)
                    size += entry.size
            if self._waiting:
                self._cond.notify()  # more work for another sender
            return group

    def _others_busy(self) -> bool:
        """Are more requests likely to join this call: fewer are waiting than this process has
        been serving at once since the previous call (a lone sequential client never waits)?"""
        waiting = len({id(entry.owner) for entry in self._waiting})
        return waiting < max(self._in_progress, self._peak)

    def _send_group(self, group: list[_Entry]) -> None:
        if not group:
            return
        by_id = {str(i): entry for i, entry in enumerate(group)}
        try:
            sqs, url = self._client()
            with self._cond:
                self.requests_made += 1
            SQS_REQUESTS.inc()
            SQS_ENTRIES_PER_CALL.observe(len(group))
            answer = sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": entry_id, "MessageBody": entry.body} for entry_id, entry in by_id.items()],
            )
        except Exception as exc:  # botocore has already retried what it can
            self._retry(group, f"{type(exc).__name__}: {exc}", backoff=True)
            return
        for ok in answer.get("Successful", []):
            by_id.pop(ok["Id"]).owner.entry_sent()
        failed = {f["Id"]: f for f in answer.get("Failed", [])}
        for entry_id, entry in by_id.items():  # SQS answered 200 but did not take these
            reason = failed.get(entry_id, {})
            if reason.get("SenderFault"):  # sending the same bytes again cannot help
                entry.owner.fail(f"SQS refused a message: {reason.get('Code')}")
            else:
                self._retry([entry], f"SQS failed an entry: {reason.get('Code', 'missing')}")

    def _retry(self, entries: list[_Entry], error: str, backoff: bool = False) -> None:
        """Put entries back at the front of the line, or fail their requests when out of tries."""
        again = []
        for entry in entries:
            entry.attempts += 1
            if entry.attempts >= self._attempts or time.monotonic() >= entry.owner.deadline:
                entry.owner.fail(error)
            else:
                again.append(entry)
        if not again:
            return
        SQS_ENTRY_RETRIES.inc(len(again))
        if backoff:  # SQS itself failed: give it a moment rather than hammering it
            time.sleep(min(1.0, 0.05 * 2 ** max(e.attempts for e in again)))
        with self._cond:
            self._waiting.extendleft(reversed(again))
            self._cond.notify()
