"""Sending events to SQS: 200 only after every message holding a request's events is accepted.

Concurrent requests in one process share messages and SendMessageBatch calls. A request hands
its events (one envelope group) to the process's sender threads and waits. A sender takes every
group waiting and packs them into messages of up to `message_max_bytes` (shared/envelope.py; a
request that does not fit the rest of a message continues in the next), up to 10 messages and
256 KiB (or `message_max_bytes` if larger) per call; the rest waits for the next call. A call
that is not full waits up to `sqs_linger_ms` for more while fewer requests wait than the process
has been serving at once (views call expect() and done()). A lone request is sent at once; under
load one message carries many requests' events, so messages and calls (and their cost, in SQS,
in our CPU and in the drain) follow the bytes rather than the request count.

A failed entry is sent again as it is; one SQS refuses (SenderFault), or that keeps failing past
the retries or the deadline, fails the requests with events in it (503) and only those.
"""

import collections
import os
import threading
import time

from prometheus_client import Counter, Histogram

from services import aws
from shared import envelope

SQS_REQUESTS = Counter("sluice_ingest_sqs_requests", "SendMessageBatch calls made")
SQS_ENTRIES_PER_CALL = Histogram(
    "sluice_ingest_sqs_entries_per_call", "messages per SendMessageBatch call", buckets=(1, 2, 3, 5, 8, 9, 10)
)
SQS_ENTRY_RETRIES = Counter("sluice_ingest_sqs_entry_retries", "entries sent again after failing")
MAX_ENTRIES = 10  # SendMessageBatch's limit
# SendMessageBatch's limit on the sum of its bodies: never below the largest message, 256 KiB on
# every SQS (1 MiB where messages may be that large).
MIN_CALL_BYTES = 262_144


class QueueUnavailable(Exception):
    """SQS did not accept every entry in time; the caller answers 503."""


class _Request:
    """One producer request: how many of its events are not in a message yet, and how many of
    the messages holding the others SQS has not accepted yet."""

    def __init__(self, events: int, deadline: float):
        self._lock = threading.Lock()  # several sender threads may carry one request's messages
        self.unpacked = events
        self.unaccepted = 0
        self.deadline = deadline
        self.error: str | None = None
        self.done = threading.Event()

    def packed(self, count: int) -> None:
        """`count` of its events went into one message."""
        with self._lock:
            self.unpacked -= count
            self.unaccepted += 1

    def accepted(self) -> None:
        with self._lock:
            self.unaccepted -= 1
            if self.unaccepted == 0 and self.unpacked == 0:
                self.done.set()

    def fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.done.set()


class _Part:
    """Events of one request still waiting to be packed."""

    __slots__ = ("group", "owner")

    def __init__(self, group: envelope.Group, owner: _Request):
        self.group, self.owner = group, owner


class _Entry:
    """A packed message, and the requests with events in it."""

    __slots__ = ("attempts", "body", "owners", "size")

    def __init__(self, body: str, owners: list[_Request]):
        self.body, self.owners, self.attempts = body, owners, 0
        self.size = len(body.encode())

    def fail(self, error: str) -> None:
        for owner in self.owners:
            owner.fail(error)


class EventQueue:
    """The events queue as the ingest API sees it: send(group) returns once SQS holds its events."""

    def __init__(self, settings, client=None, attempts: int = 4):
        self._settings = settings
        self._attempts = attempts
        self._deadline = settings.sqs_send_deadline_seconds
        self._max_bytes = settings.message_max_bytes
        self._call_bytes = max(MIN_CALL_BYTES, settings.message_max_bytes)
        self._senders = max(1, settings.sqs_senders)
        self._sqs = client
        self._url = None
        self._waiting: collections.deque[_Part] = collections.deque()  # not packed yet
        self._ready: collections.deque[_Entry] = collections.deque()  # packed: retries, overflow
        self._cond = threading.Condition()
        self._pid = None  # sender threads belong to the process that started them (gunicorn forks)
        self._linger = settings.sqs_linger_ms / 1000
        self._in_progress = 0  # requests in this process between expect() and done()
        self._peak = 0  # the most in progress at once since a sender last took a call's worth
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
            if not self._others_busy():
                self._cond.notify()  # a lingering sender need wait no longer

    def waiting(self) -> int:
        """How many requests have events that SQS has not been asked to take yet."""
        with self._cond:
            return self._requests_waiting()

    def send(self, group: envelope.Group) -> None:
        """Return once SQS has accepted every event of the group; raise QueueUnavailable if it
        did not in time."""
        if not group.events:
            return
        self._start_senders()
        request = _Request(len(group.events), time.monotonic() + self._deadline)
        with self._cond:
            self._waiting.append(_Part(group, request))
            # Wake a sender only when it has something to do: it was idle, or it lingers for
            # requests that have now all arrived. Every needless wake-up costs the GIL.
            if len(self._waiting) == 1 or not self._others_busy():
                self._cond.notify()
        if not request.done.wait(self._deadline + 1):
            request.fail("timed out waiting for SQS")
        if request.error is not None:
            raise QueueUnavailable(request.error)

    def _start_senders(self) -> None:
        if self._pid == os.getpid():
            return
        with self._cond:
            if self._pid != os.getpid():
                # Inherited from a parent process: not ours to send.
                self._waiting.clear()
                self._ready.clear()
                for i in range(self._senders):
                    threading.Thread(target=self._sender, name=f"sqs-sender-{i}", daemon=True).start()
                self._pid = os.getpid()

    def _sender(self) -> None:
        while True:
            entries: list[_Entry] = []
            try:
                entries = self._next_call()
                self._send_call(entries)
            except Exception as exc:  # never let a sender die: its requests would hang
                for entry in entries:
                    entry.fail(f"{type(exc).__name__}: {exc}")

    def _next_call(self) -> list[_Entry]:
        """Block until something waits, then pack up to 10 messages that fit one call."""
        with self._cond:
            while not self._waiting and not self._ready:
                self._cond.wait()
            until = time.monotonic() + self._linger
            while self._others_busy() and time.monotonic() < until:
                self._cond.wait(until - time.monotonic())
            self._peak = self._in_progress
            ready, self._ready = list(self._ready), collections.deque()
            parts, self._waiting = list(self._waiting), collections.deque()
        # Packing (and compressing) happens outside the lock: requests keep arriving meanwhile.
        entries, size = [], 0
        parts = [p for p in parts if p.owner.error is None]  # those that gave up: pointless to send
        while len(entries) < MAX_ENTRIES and (ready or parts):
            try:
                entry = ready.pop(0) if ready else self._pack(parts)
            except envelope.EnvelopeError as exc:  # an event larger than a message: intake refuses those
                parts.pop(0).owner.fail(str(exc))
                continue
            if entries and size + entry.size > self._call_bytes:
                ready.insert(0, entry)
                break
            entries.append(entry)
            size += entry.size
        with self._cond:  # what did not fit goes first next time
            self._ready.extendleft(reversed(ready))
            self._waiting.extendleft(reversed(parts))
            if self._ready or self._waiting:
                self._cond.notify()  # more work for another sender
        return entries

    def _pack(self, parts: list[_Part]) -> _Entry:
        """One message from the front of `parts`, which keeps what did not fit."""
        body, count = envelope.pack_message([p.group for p in parts], self._max_bytes)
        owners = []
        while count:
            part = parts[0]
            take = min(count, len(part.group.events))
            part.owner.packed(take)
            owners.append(part.owner)
            count -= take
            if take == len(part.group.events):
                parts.pop(0)
            else:
                [part.group] = envelope.remaining([part.group], take)
        return _Entry(body, owners)

    def _requests_waiting(self) -> int:
        # A request has at most one part waiting (what did not fit is put back as one part).
        return len(self._waiting) + sum(len(e.owners) for e in self._ready)

    def _others_busy(self) -> bool:
        """Are more requests likely to join this call: fewer are waiting than this process has
        been serving at once since the previous call (a lone sequential client never waits)?"""
        return self._requests_waiting() < max(self._in_progress, self._peak)

    def _send_call(self, entries: list[_Entry]) -> None:
        if not entries:
            return
        by_id = {str(i): entry for i, entry in enumerate(entries)}
        try:
            sqs, url = self._client()
            with self._cond:
                self.requests_made += 1
            SQS_REQUESTS.inc()
            SQS_ENTRIES_PER_CALL.observe(len(entries))
            answer = sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": entry_id, "MessageBody": entry.body} for entry_id, entry in by_id.items()],
            )
        except Exception as exc:  # botocore has already retried what it can
            self._retry(entries, f"{type(exc).__name__}: {exc}", backoff=True)
            return
        for ok in answer.get("Successful", []):
            for owner in by_id.pop(ok["Id"]).owners:
                owner.accepted()
        failed = {f["Id"]: f for f in answer.get("Failed", [])}
        for entry_id, entry in by_id.items():  # SQS answered 200 but did not take these
            reason = failed.get(entry_id, {})
            if reason.get("SenderFault"):  # sending the same bytes again cannot help
                entry.fail(f"SQS refused a message: {reason.get('Code')}")
            else:
                self._retry([entry], f"SQS failed an entry: {reason.get('Code', 'missing')}")

    def _retry(self, entries: list[_Entry], error: str, backoff: bool = False) -> None:
        """Put entries back at the front of the line, or fail their requests when out of tries."""
        again = []
        for entry in entries:
            entry.attempts += 1
            if entry.attempts >= self._attempts or time.monotonic() >= min(o.deadline for o in entry.owners):
                entry.fail(error)
            else:
                again.append(entry)
        if not again:
            return
        SQS_ENTRY_RETRIES.inc(len(again))
        if backoff:  # SQS itself failed: give it a moment rather than hammering it
            time.sleep(min(1.0, 0.05 * 2 ** max(e.attempts for e in again)))
        with self._cond:
            self._ready.extendleft(reversed(again))
            self._cond.notify()
