"""A local SMTP server that keeps every message as a file: `make run` and the tests read login
mail from it instead of needing a real mail server.
"""

import email
import email.policy
import re
import threading
from pathlib import Path

from aiosmtpd.controller import Controller

from devtools import devstack

LINK = re.compile(r"https?://\S+")


class Outbox:
    """aiosmtpd handler: each message becomes NNNN-<recipient>.eml in `directory`."""

    def __init__(self, directory: Path, announce=print):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._announce = announce
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            number = len(list(self.directory.glob("*.eml"))) + 1
            safe_to = re.sub(r"[^\w.@-]", "_", ",".join(envelope.rcpt_tos).lower())
            path = self.directory / f"{number:04d}-{safe_to}.eml"
            path.write_bytes(envelope.content)
        for link in LINK.findall(message_text(path)):
            self._announce(f"mail to {', '.join(envelope.rcpt_tos)}: {link}")
        return "250 Message accepted for delivery"


def message_text(path: Path) -> str:
    message = email.message_from_bytes(Path(path).read_bytes(), policy=email.policy.default)
    return message.get_body(preferencelist=("plain",)).get_content()


def start(directory: Path, port: int, host: str = "127.0.0.1", announce=print) -> Controller:
    """Serve SMTP on host:port in a thread; call .stop() on the answer to end it."""
    controller = Controller(Outbox(directory, announce), hostname=host, port=port)
    controller.start()
    return controller


def wait_for_message(directory: Path, to: str, number: int = 1, timeout: float = 30) -> str:
    """The text of the `number`-th message to `to`, polling until it arrives (tests, scripts)."""

    def arrived():
        found = sorted(Path(directory).glob(f"*-*{to.lower()}*.eml"))
        return found[number - 1] if len(found) >= number else None

    return message_text(devstack.wait_until(arrived, timeout, f"mail #{number} to {to}"))
