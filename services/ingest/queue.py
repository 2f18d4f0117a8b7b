"""Sending envelopes to SQS: 200 only after every entry is accepted."""
import time
import uuid

from services import aws


class QueueUnavailable(Exception):
    """SQS did not accept every entry after retries; the caller answers 503."""


class EventQueue:
    def __init__(self, settings, attempts: int = 4):
        self._settings = settings
        self._attempts = attempts
        self._sqs = None
        self._url = None

    def _client(self):
        if self._sqs is None:
            self._sqs = aws.client(self._settings, "sqs")
            self._url = aws.queue_url(self._sqs, self._settings.events_queue)
        return self._sqs, self._url

    def ping(self) -> None:
        sqs, url = self._client()
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])

    def send(self, bodies: list[str]) -> int:
        """Send message bodies in as few SendMessageBatch calls as the limits allow.

        Returns the number of SQS requests made. Entries that fail inside a 200 answer are sent
        again, with backoff; raises QueueUnavailable if some still fail.
        """
        requests = 0
        for group in self._groups(bodies):
            pending = {str(i): body for i, body in enumerate(group)}
            for attempt in range(self._attempts):
                if attempt:
                    time.sleep(0.05 * 2 ** attempt)
                try:
                    sqs, url = self._client()
                    requests += 1
                    answer = sqs.send_message_batch(QueueUrl=url, Entries=[
                        {"Id": entry_id, "MessageBody": body} for entry_id, body in pending.items()])
                except Exception as exc:  # botocore has already retried what it can
                    last_error = exc
                    continue
                for ok in answer.get("Successful", []):
                    pending.pop(ok["Id"], None)
                if not pending:
                    break
                last_error = answer.get("Failed")
            if pending:
                raise QueueUnavailable(str(last_error))
        return requests

    def _groups(self, bodies: list[str]):
        """Groups of at most 10 bodies whose total stays under the per-request size limit."""
        limit = self._settings.message_max_bytes
        group, size = [], 0
        for body in bodies:
            n = len(body.encode())
            if group and (len(group) == 10 or size + n > limit):
                yield group
                group, size = [], 0
            group.append(body)
            size += n
        if group:
            yield group


def new_batch_id() -> str:
    return str(uuid.uuid4())
