"""`make bench BENCH=name` (or `python -m bench name`): run one benchmark, or list them."""

import importlib
import pkgutil
import sys

import bench


def main(argv: list[str]) -> int:
    available = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    if not argv or argv[0] not in available:
        print("usage: make bench BENCH=<name> [args]   available:", ", ".join(available) or "none")
        return 2
    return importlib.import_module(f"bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
