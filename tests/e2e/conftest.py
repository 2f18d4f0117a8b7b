"""Start the real processes (gunicorn, celery) on free ports for end-to-end tests."""

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devtools import devstack

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# Debian's chromium (scripts/bootstrap.sh installs it), driven by playwright: never a browser
# build of playwright's own.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Service:
    def __init__(self, name, cmd, env, log_dir, port=None):
        self.name, self.port = name, port
        self.log = log_dir / f"{name}.log"
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=ROOT,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if port:
            devstack.wait_until(self._healthy, 60, name, self.proc)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        devstack.stop(self.proc, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def gunicorn(name, module, env, log_dir):
    port = devstack.free_port()
    return Service(name, devstack.api_command(module, port), env, log_dir, port)


def celery_worker(env, log_dir, name="worker"):
    cmd = devstack.celery_command("worker", "-l", "INFO", "-c", "1", "-n", f"{name}@%h")
    return Service(name, cmd, env, log_dir)


def celery_beat(env, log_dir):
    cmd = devstack.celery_command("beat", "-l", "INFO", "-s", str(log_dir / "celerybeat-schedule"))
    return Service("beat", cmd, env, log_dir)


@pytest.fixture
def services(stack, names, provisioned, no_open_jobs, tmp_path):
    """A factory for real service processes; everything it started is stopped afterwards."""
    started = []
    # Workers serve no metrics port unless a test asks: several may run at once.
    env = stack.env(
        **{"SLUICE_" + k.upper(): v for k, v in names.items()},
        SLUICE_DRAIN_WAIT_SECONDS=1,
        SLUICE_WORKER_METRICS_PORT=0,
    )

    class Factory:
        environ = env

        def ingest(self, **extra):
            return self._add(gunicorn("ingest", "ingest", {**env, **extra}, tmp_path))

        def control(self, **extra):
            return self._add(gunicorn("control", "control", {**env, **extra}, tmp_path))

        def worker(self, name="worker", **extra):
            return self._add(celery_worker({**env, **extra}, tmp_path, name))

        def beat(self, **extra):
            return self._add(celery_beat({**env, **extra}, tmp_path))

        def process(self, name, cmd, **extra):
            """Any other program (a producer's own web app), its output in its log."""
            return self._add(Service(name, cmd, {**env, **{k: str(v) for k, v in extra.items()}}, tmp_path))

        def _add(self, service):
            started.append(service)
            return service

    yield Factory()
    for service in reversed(started):
        service.stop()


@pytest.fixture
def browser():
    """Headless Chromium, as a person's browser: cookies, scripts, canvas."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make bootstrap` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
