"""Bad input never gets a 500: every route of both APIs, with and without valid credentials,
against a battery of malformed bodies and path values."""

import json

import pytest

from services.control.app import create_app as create_control
from services.ingest.app import create_app as create_ingest
from services.settings import ControlSettings, IngestSettings

SKIP = {"/static/<path:filename>", "/metrics", "/readyz", "/healthz", "/openapi.json", "/system/version"}
PATH_VALUES = ["x", "99999999999999999999999", "JOB-not-a-uuid", "-1", "%00", "JOB-" + "0" * 36]
BODIES = [
    None,
    ("not json at all", "application/json"),
    (b"\xff\xfe\x00bad utf-8", "application/json"),
    ("[]", "application/json"),
    ("{}", "application/json"),
    ("null", "application/json"),
    ('"a string"', "application/json"),
    ("[1, 2, 3]", "application/json"),
    ("1e999999", "application/json"),
    (
        '{"filter": "x", "events": 7, "ExportIds": {"a": 1}, "EntityType": [], "module": {}, '
        '"connectorID": 12, "driver": null, "config": "x", "email": 5, "org_id": "x", "app_name": []}',
        "application/json",
    ),
    (
        '{"filter": {"start": "soon", "end": -1e400}, "ExportIds": [null, 1, "x"], "EntityType": "Event", '
        '"driver": "http", "config": {"url": 5}, "module": "events", "connectorID": "nope", '
        '"email": "a@b.c"}',
        "application/json",
    ),
    ("[" * 5000 + "]" * 5000, "application/json"),
    ("a=1&b=2", "application/x-www-form-urlencoded"),
    ("not gzip", "application/json", {"Content-Encoding": "gzip"}),
]


def routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule in SKIP:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def expand(rule) -> list[str]:
    paths = [rule.rule]
    for arg in rule.arguments:
        values = ["1", "99999999999999999999999"] if "int:" in rule.rule else PATH_VALUES
        if arg == "action":
            values = ["pause", "explode"]
        paths = [p.replace(f"<{arg}>", v).replace(f"<int:{arg}>", v) for p in paths for v in values]
    return paths


@pytest.fixture
def apps(stack, names, provisioned):
    ingest = create_ingest(stack.settings(IngestSettings, **names)).test_client()
    control = create_control(stack.settings(ControlSettings, **names)).test_client()
    control.environ_base["REMOTE_ADDR"] = "10.123.0.9"  # wrong credentials here do not rate-limit others
    return {"ingest": ingest, "control": control}


def send(client, method, path, body, credentials):
    app_id, key = credentials or ("1", "sk_wrong")
    headers = {"X-Moesif-Application-Id": key, "X-Sluice-App": app_id}
    kwargs = {"headers": headers, "auth": (app_id, key)}
    if body is not None:
        data, content_type, *extra = body
        if content_type == "application/json" and isinstance(data, str) and data.startswith("{"):
            try:  # put the credentials where the Mews contract takes them, too
                parsed = json.loads(data)
                data = json.dumps({**parsed, "AccessToken": key, "ClientToken": "c", "Client": "c"})
            except ValueError:
                pass
        kwargs.update(data=data, content_type=content_type)
        headers.update(*extra)
    return getattr(client, method.lower())(path, **kwargs)


@pytest.mark.parametrize("service", ["ingest", "control"])
@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "with-a-valid-key"])
def test_no_route_answers_bad_input_with_a_server_error(apps, tenant, service, authenticated):
    client = apps[service]
    credentials = (str(tenant[0]), tenant[1]) if authenticated else None
    failures = []
    for rule, method in routes(client.application):
        for path in expand(rule):
            for body in BODIES if method != "GET" else [None]:
                resp = send(client, method, path, body, credentials)
                if resp.status_code >= 500 and resp.status_code != 503:
                    failures.append(
                        (
                            method,
                            path,
                            body and str(body[0])[:40],
                            resp.status_code,
                            resp.get_data(as_text=True)[:200],
                        )
                    )
    assert not failures, "\n".join(map(str, failures[:20]))
