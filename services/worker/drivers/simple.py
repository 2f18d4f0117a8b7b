"""stdout (one JSON line per event on the worker's standard output) and noop (drops everything)."""

import sys

from services.worker.drivers.base import Driver


class StdoutDriver(Driver):
    def send(self, docs, first, deadline):
        sys.stdout.write("".join(doc + "\n" for doc in docs))
        sys.stdout.flush()


class NoopDriver(Driver):
    def send(self, docs, first, deadline):
        pass
