"""`make bench BENCH=name` (or `python -m bench name`): run one benchmark, or list them."""

import importlib
import pkgutil
import signal
import sys

import bench


def _stop(signum, frame):
    """Ctrl-C or SIGTERM: unwind once, so the benchmark's `with` blocks stop the Postgres, moto
    and gunicorn it started; a second signal must not cut that clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    available = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    if not argv or argv[0] not in available:
        print("usage: make bench BENCH=<name> [args]   available:", ", ".join(available) or "none")
        return 2
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        return importlib.import_module(f"bench.{argv[0]}").main(argv[1:]) or 0
    except KeyboardInterrupt as stopped:
        print(f"\nbenchmark stopped ({stopped or 'SIGINT'}); what it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
