"""Progress of long command-line work, on one line of stderr, only when stderr is a terminal.

Scripts and pipes see nothing extra; `--json` output stays one object.
"""

import sys
import time


class Progress:
    """`with Progress("replaying", total) as progress: ... progress.update(done)`."""

    INTERVAL = 0.1  # seconds between redraws: a terminal need not see every step

    def __init__(self, label: str, total: int | None = None, stream=None, enabled: bool = True):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.done = 0
        self._drawn_at = 0.0
        self._drawn = False

    def __enter__(self):
        self.update(0)
        return self

    def __exit__(self, *exc):
        if self._drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def update(self, done: int) -> None:
        self.done = done
        if self.enabled and time.monotonic() - self._drawn_at >= self.INTERVAL:
            self._draw()

    def _draw(self) -> None:
        if self.total:
            shown = f"{self.done}/{self.total} ({100 * self.done // self.total}%)"
        else:
            shown = str(self.done)
        self.stream.write(f"\r{self.label}: {shown}\x1b[K")  # \x1b[K: erase what a longer line left
        self.stream.flush()
        self._drawn_at, self._drawn = time.monotonic(), True
