"""CPU time of process trees, from /proc: what each component of a benchmark burned.

A tree's time is the user+system time of every live process in it plus what its processes' exited
children left in their cutime/cstime, so backends and pool children that come and go still count.
"""

import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, cpu seconds including reaped children), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) "
    # fields[1] is ppid; utime, stime, cutime, cstime are fields 14-17 of the file (11-14 here).
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / TICKS


def tree_seconds(roots: list[int]) -> float:
    """CPU seconds so far of the processes `roots` and all their descendants."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle, not waiting on I/O) so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICKS  # minus idle and iowait


def own_seconds() -> float:
    """This process's own CPU seconds (its children not included)."""
    return time.process_time()


class Meter:
    """CPU used by named components between start() and stop(), as cores (seconds per second)."""

    def __init__(self, components: dict[str, list[int]]):
        self.components = components

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: tree_seconds(pids) for name, pids in self.components.items()}
        self._own0, self._machine0 = own_seconds(), machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        """Cores used by each component, by this process ("bench itself"), and by everything else
        on the machine ("other processes": a shared machine's other work)."""
        wall = time.perf_counter() - self._t0
        used = {name: tree_seconds(pids) - self._cpu0[name] for name, pids in self.components.items()}
        used["bench itself"] = own_seconds() - self._own0
        used["other processes"] = max(0.0, machine_busy_seconds() - self._machine0 - sum(used.values()))
        return {name: seconds / wall for name, seconds in used.items()}
