"""A benchmark stopped with Ctrl-C or SIGTERM stops the Postgres and moto server it started."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_an_interrupted_bench_stops_its_postgres_and_moto(tmp_path, stop):
    log = tmp_path / "bench.log"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "drain", "--repeat", "1", "--processes", "1"],  # minutes of work
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: "drain benchmark:" in log.read_text(), 120, "the bench's servers to start")
        started = children(bench.pid)
        assert len(started) >= 2  # Postgres (under runuser) and the moto server
        bench.send_signal(stop)
        bench.wait(60)
        assert "benchmark stopped" in log.read_text()  # interrupted, not finished
        wait_for(lambda: not any(map(alive, started)), 30, "the bench's servers to stop")
    finally:
        if bench.poll() is None:
            bench.kill()
