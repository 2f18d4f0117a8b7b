"""Benchmarks: each module measures one path against the floor it sits on, in the same run."""

import threading
import time


def timed_threads(n: int, target) -> float:
    """Seconds for `n` threads running `target` at once, from the first start to the last join."""
    # Daemonic: a bench interrupted while they run must not wait for them to exit.
    threads = [threading.Thread(target=target, daemon=True) for _ in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
