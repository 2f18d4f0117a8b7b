"""`make run` (sluice dev run) brings up the whole trio and a demo key that works."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

from devtools import devstack
from tests.helpers import query, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_dev_run_serves_the_trio_and_stops_cleanly_on_ctrl_c(stack, names, tmp_path):
    ingest_port, control_port, moto_port = (devstack.free_port() for _ in range(3))
    env = stack.env(
        SLUICE_INGEST_PORT=ingest_port,
        SLUICE_CONTROL_PORT=control_port,
        SLUICE_MOTO_PORT=moto_port,
        SLUICE_STATE_DIR=tmp_path / "state",
        SLUICE_DRAIN_WAIT_SECONDS=1,
        SLUICE_WORKER_CONCURRENCY=1,
        **{"SLUICE_" + k.upper(): v for k, v in names.items()},
    )
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "sluice"), "dev", "run"],
        env=env,
        cwd=ROOT,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        banner = wait_for(
            lambda: re.search(r"demo app id\s+(\d+)\s+demo API key (\S+)", log.read_text()),
            90,
            "the make run banner",
        )
        app_id, key = banner.group(1), banner.group(2)
        assert (tmp_path / "state/run.env").read_text().count("SLUICE_") >= 3
        control = f"http://127.0.0.1:{control_port}"
        assert requests.get(control + "/readyz", timeout=10).json()["status"] == "ok"
        resp = requests.post(
            f"http://127.0.0.1:{ingest_port}/events",
            auth=(app_id, key),
            timeout=10,
            json=[{"customer": "DEMO", "product": "RUN", "type": "HELLO", "timestamp": 1, "context": []}],
        )
        assert resp.status_code == 200, resp.text
        batch = resp.json()[0]["batch"]
        wait_for(
            lambda: query(stack.database_url, "SELECT 1 FROM events WHERE batch = %s", (batch,)),
            60,
            "the demo event in Postgres",
        )
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        proc.wait(60)
    for port in (ingest_port, control_port, moto_port):
        assert not devstack.port_open(port), f"port {port} still served after Ctrl-C"
