"""Moesif's own middlewares, unchanged but for their base URI and a Sluice key, posting to Sluice.

A Flask app wrapped in moesifwsgi and an Express app using moesif-nodejs (tests/e2e/middleware_apps/)
serve calls with different verbs and statuses; each call lands in api_calls once, under the key's
app, and neither middleware logs an error.
"""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devtools import devstack
from tests.helpers import query, wait_for

APPS = Path(__file__).parent / "middleware_apps"
NODE_CACHE = Path(__file__).resolve().parents[2] / ".state" / "npm-middleware-apps"
# (verb, path, request body, status, response body): what each app serves (the same in both).
CALLS = [
    ("GET", "/items/1", None, 200, {"id": 1}),
    ("POST", "/items", {"name": "widget"}, 201, {"id": 2, "name": "widget"}),
    ("PUT", "/items/9", {"name": "gadget"}, 404, {"error": "no item 9"}),
    ("DELETE", "/items/1", None, 500, {"error": "boom"}),
]


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """express and moesif-nodejs as package-lock.json pins them, installed with `npm ci` into a
    cache directory that later runs reuse while package.json and the lock file are unchanged."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.fail("the Express app test needs Node.js (18 or later) and npm on the PATH")
    manifests = [APPS / "package.json", APPS / "package-lock.json"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in manifests)).hexdigest()
    stamp = NODE_CACHE / ".installed"
    if not stamp.exists() or stamp.read_text() != digest:
        shutil.rmtree(NODE_CACHE, ignore_errors=True)
        NODE_CACHE.mkdir(parents=True)
        for path in manifests:
            shutil.copy(path, NODE_CACHE)
        npm = subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_CACHE), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert npm.returncode == 0, npm.stdout + npm.stderr
        stamp.write_text(digest)
    return NODE_CACHE / "node_modules"


def start_app(services, name, cmd, ingest, key, **env):
    """Start a producer's app pointed at the ingest API; its URL once it listens."""
    port = devstack.free_port()
    app = services.process(name, cmd, MOESIF_BASE_URI=ingest.url, MOESIF_APPLICATION_ID=key, PORT=port, **env)
    try:
        devstack.wait_until(lambda: "listening" in app.output(), 60, name, app.proc)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(f"{exc}:\n{app.output()}")
    return app, f"http://127.0.0.1:{port}"


def call(url, calls):
    for verb, path, body, status, _ in calls:
        resp = requests.request(verb, url + path, json=body, timeout=15)
        assert resp.status_code == status, resp.text


def stored(stack, app_id, count):
    """Wait until `count` calls of the app are in Postgres; return them."""

    def rows():
        return query(
            stack.database_url,
            """SELECT verb, uri, status, request->'body', response->'body'
                 FROM api_calls WHERE app_id = %s ORDER BY request_time""",
            (app_id,),
        )

    return wait_for(lambda: len(rows()) >= count and rows(), 60, f"{count} calls in api_calls")


def assert_stored_once(rows, url):
    assert len(rows) == len(CALLS), rows
    # A call without a body is recorded with none, or an empty one (DELETE sends Content-Length: 0).
    got = {verb: (uri, status, request or None, response) for verb, uri, status, request, response in rows}
    sent = {verb: (url + path, status, request, response) for verb, path, request, status, response in CALLS}
    assert got == sent


def fetches(ingest) -> tuple[list[str], ...]:
    """The statuses the ingest API answered GET /v1/config and GET /v1/rules with (its access log)."""
    log = ingest.output()
    return tuple(re.findall(rf'"GET /v1/{doc} HTTP/1\.1" (\d+)', log) for doc in ("config", "rules"))


def test_moesifwsgi_in_a_flask_app_stores_every_call_once(stack, services, tenant):
    app_id, key = tenant
    ingest, _ = services.ingest(SLUICE_ACCESS_LOG="-"), services.worker()
    flask, url = start_app(services, "flask", [sys.executable, str(APPS / "flask_app.py")], ingest, key)
    call(url, CALLS)
    assert_stored_once(stored(stack, app_id, len(CALLS)), url)
    # It logged no warning or error about anything, and read the config and the rules at start-up.
    complaints = [line for line in flask.output().splitlines() if re.match(r"(WARNING|ERROR|CRITICAL)", line)]
    assert not complaints and "Traceback" not in flask.output(), flask.output()
    config, rules = fetches(ingest)
    assert set(config) == set(rules) == {"200"}, (config, rules)


def test_moesif_nodejs_in_an_express_app_stores_every_call_once(stack, services, tenant, node_modules):
    app_id, key = tenant
    ingest, _ = services.ingest(SLUICE_ACCESS_LOG="-"), services.worker()
    cmd = ["node", str(APPS / "express_app.js")]
    express, url = start_app(services, "express", cmd, ingest, key, NODE_PATH=node_modules)
    call(url, CALLS[:1])
    stored(stack, app_id, 1)
    # Once an events answer has carried the config's ETag, the middleware asks for neither the
    # config nor the rules again within the minute, however many calls it handles.
    config, rules = seen = fetches(ingest)
    assert set(config) == set(rules) == {"200"}, seen
    call(url, CALLS[1:])
    assert_stored_once(stored(stack, app_id, len(CALLS)), url)
    assert fetches(ingest) == seen
    assert express.output().strip() == "listening"  # errors would be on stderr (its callback)
