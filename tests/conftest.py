"""The real dependencies for the whole suite: a private Postgres, Redis and moto server.

They run on free ports in a temporary directory, so the suite passes beside a running `make run`.
Fixtures live here and in each folder's conftest.py; builders in tests/factories.py, shared
steps in tests/helpers.py.
"""

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from devtools import devstack, mailsink
from services import aws, cli
from services.database import Database
from services.settings import CommonSettings, WorkerSettings
from services.worker.drain import Drainer
from tests.factories import make_tenant
from tests.helpers import Outbox

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Stack:
    root: Path
    database_url: str
    redis_url: str
    aws_endpoint_url: str
    procs: dict = field(default_factory=dict)

    def env(self, **extra) -> dict:
        """Environment for a service process pointed at this stack."""
        return {
            **os.environ,
            **AWS_ENV,
            "SLUICE_DATABASE_URL": self.database_url,
            "SLUICE_REDIS_URL": self.redis_url,
            "SLUICE_AWS_ENDPOINT_URL": self.aws_endpoint_url,
            **{k: str(v) for k, v in extra.items()},
        }

    def settings(self, cls, **overrides):
        base = {"database_url": self.database_url, "aws_endpoint_url": self.aws_endpoint_url}
        if "redis_url" in cls.__dataclass_fields__:
            base["redis_url"] = self.redis_url
        return cls(**{**base, **overrides})


@pytest.fixture(scope="session")
def stack():
    os.environ.update(AWS_ENV)
    with devstack.private_stack("sluice-test-", redis=True) as local:
        yield Stack(local.root, local.database_url, local.redis_url, local.aws_endpoint_url, local.procs)


@pytest.fixture
def names():
    """Queue and bucket names of this test's own, so tests never drain each other's messages."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "events_queue": f"events-{suffix}",
        "events_dlq": f"dlq-{suffix}",
        "exports_bucket": f"exports-{suffix}",
    }


@pytest.fixture
def provisioned(stack, names):
    return aws.provision(stack.settings(CommonSettings, **names), visibility_timeout=30)


@pytest.fixture
def drainer(stack, names, provisioned):
    """The real drain on this test's queue; tests call drain_once (tests.helpers.drain_all)."""
    db = Database(stack.database_url, maxconn=2)
    yield Drainer(stack.settings(WorkerSettings, **names), db)
    db.close()


@pytest.fixture
def db(stack):
    database = Database(stack.database_url, maxconn=4)
    yield database
    database.close()


@pytest.fixture
def no_open_jobs(stack):
    """No render job that an earlier test left queued or running: workers claim the next job of
    any app, fairly, and the sweep counts every queued job, so those would be taken first."""
    with psycopg2.connect(stack.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE render_jobs SET status = 'failed', error = 'left open by an earlier test'
                       WHERE status IN ('queued', 'running')"""
        )
    conn.close()


@pytest.fixture
def tenant(db):
    """A fresh org with one app and one key: (app_id, api_key)."""
    return make_tenant(db)


@pytest.fixture
def outbox(tmp_path):
    """A local SMTP sink on a free port; login mail lands in it."""
    port = devstack.free_port()
    sink = mailsink.start(tmp_path / "outbox", port, announce=lambda line: None)
    yield Outbox(tmp_path / "outbox", port)
    sink.stop()


@pytest.fixture
def sluice(stack, names, monkeypatch, capsys):
    """Run the `sluice` command line against this test's stack and queues; return its JSON output."""
    for var, value in {
        "SLUICE_DATABASE_URL": stack.database_url,
        "SLUICE_AWS_ENDPOINT_URL": stack.aws_endpoint_url,
        **{"SLUICE_" + k.upper(): v for k, v in names.items()},
    }.items():
        monkeypatch.setenv(var, value)

    def run(*argv, json_output=True):
        capsys.readouterr()
        assert cli.main([*argv, "--json"] if json_output else list(argv)) == 0
        out = capsys.readouterr().out
        return json.loads(out) if json_output else out

    return run
