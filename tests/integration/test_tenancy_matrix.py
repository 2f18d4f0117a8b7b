"""No credential of app A reaches anything of app B, on every endpoint; dead credentials are refused;
an ingest key reaches nothing on the control API, not even its own app's things.

Two tenants, A and B, each an org with a logged-in user, an app, an admin key and an ingest key.
Every row of CASES is one request made with one of A's credentials against one of B's things, or
with A's ingest key against A's own; after it, A and B must be untouched. Endpoints added later
append their rows here (expected status per their document: Data Cortex answers 403, the others
404 or 401).
"""

import re
from dataclasses import dataclass

import pytest

from services import tenancy
from services.control import auth
from services.ingest.app import create_app as create_ingest
from services.settings import IngestSettings
from shared.enums import KeyScope
from shared.schemas.pipelines import ACTIONS
from tests.factories import Person, barchart_event, person
from tests.helpers import client_for, control_app, logged_in

ELSEWHERE = {"REMOTE_ADDR": "10.200.0.1"}  # wrong keys here do not count against 127.0.0.1's limit
EVENT = barchart_event()
REPORT = {"filter": {"customer": "ACME", "product": "WEB"}}


@dataclass
class Tenant:
    who: Person
    session_key: str
    things: dict  # ids of what the tenant made through the APIs: source, export, connector, pipeline
    ingest_key_id: int
    ingest_key: str


# (what is tried, service, method, path, credential, body, allowed answers)
# Paths and bodies name B's things as {B.app_id}, {B.org_id}, {B.key_id} and A's as {A.…}.
# B's report source, export id, connector id and pipeline id are {b[source]} and so on.
# Credentials: "A.session" (A's session key in the body), "A.key-as-B" (HTTP Basic with B's app id
# and A's key), "A.key-as-session" (A's API key where a session key goes), "A.basic" (A's own HTTP
# Basic), "A.token" (A's key as Mews AccessToken), "A.session-as-B" (A's session key naming B's app).
# A's ingest key: "A.ingest-basic" (HTTP Basic with A's app id), "A.ingest-token" (Mews AccessToken),
# "A.ingest-as-session" (where a session key goes); A's own things are {a[source]} and so on.
INGEST_KEY_CASES = [
    ("start a report", "control", "post", "/reports", "A.ingest-basic", {"filter": {}}, {401}),
    (
        "read a report's status",
        "control",
        "get",
        "/reports/{a[source]}/availability",
        "A.ingest-basic",
        None,
        {401},
    ),
    ("download a report", "control", "get", "/reports/{a[source]}", "A.ingest-basic", None, {401}),
    (
        "add an export",
        "control",
        "post",
        "/api/connector/v1/exports/add",
        "A.ingest-token",
        {"EntityType": "ApiCall"},
        {401},
    ),
    (
        "get an export",
        "control",
        "post",
        "/api/connector/v1/exports/getAll",
        "A.ingest-token",
        {"ExportIds": ["{a[export]}"]},
        {401},
    ),
    ("list connectors", "control", "get", "/connectors", "A.ingest-basic", None, {401}),
    (
        "create a connector",
        "control",
        "post",
        "/connectors",
        "A.ingest-basic",
        {"driver": "noop", "config": {}},
        {401},
    ),
    ("read a connector", "control", "get", "/connectors/{a[connector]}", "A.ingest-basic", None, {401}),
    ("delete a connector", "control", "delete", "/connectors/{a[connector]}", "A.ingest-basic", None, {401}),
    ("list pipelines", "control", "get", "/pipelines", "A.ingest-basic", None, {401}),
    (
        "create a pipeline",
        "control",
        "post",
        "/pipelines",
        "A.ingest-basic",
        {"module": "api_calls", "connectorID": "{a[connector]}"},
        {401},
    ),
    ("read a pipeline", "control", "get", "/pipelines/{a[pipeline]}", "A.ingest-basic", None, {401}),
    ("delete a pipeline", "control", "delete", "/pipelines/{a[pipeline]}", "A.ingest-basic", None, {401}),
    *[
        (
            f"{action} a pipeline",
            "control",
            "post",
            f"/pipelines/{{a[pipeline]}}/{action}",
            "A.ingest-basic",
            None,
            {401},
        )
        for action in ACTIONS
    ],
    ("read the user", "control", "get", "/api/1/user", "A.ingest-as-session", {}, {403}),
    ("log out", "control", "post", "/api/1/logout", "A.ingest-as-session", {}, {403}),
    (
        "list the org's apps",
        "control",
        "get",
        "/api/1/app?org_id={A.org_id}",
        "A.ingest-as-session",
        {},
        {403},
    ),
    (
        "create an app",
        "control",
        "post",
        "/api/1/app",
        "A.ingest-as-session",
        {"org_id": "{A.org_id}", "app_name": "intruder"},
        {403},
    ),
    ("delete the app", "control", "delete", "/api/1/app/{A.app_id}", "A.ingest-as-session", {}, {403}),
    (
        "add a key (an admin one)",
        "control",
        "post",
        "/api/1/app/{A.app_id}/key",
        "A.ingest-as-session",
        {"scope": "admin"},
        {403},
    ),
    (
        "revoke the admin key",
        "control",
        "delete",
        "/api/1/app/{A.app_id}/key/{A.key_id}",
        "A.ingest-as-session",
        {},
        {403},
    ),
]
CASES = [
    ("post events to B's app with A's key", "ingest", "post", "/events", "A.key-as-B", [EVENT], {401}),
    ("list B's apps", "control", "get", "/api/1/app?org_id={B.org_id}", "A.session", {}, {403}),
    (
        "create an app in B's org (GET form)",
        "control",
        "get",
        "/api/1/app?org_id={B.org_id}&app_name=intruder",
        "A.session",
        {},
        {403},
    ),
    (
        "create an app in B's org",
        "control",
        "post",
        "/api/1/app",
        "A.session",
        {"org_id": "{B.org_id}", "app_name": "intruder"},
        {403},
    ),
    ("delete B's app", "control", "delete", "/api/1/app/{B.app_id}", "A.session", {}, {403}),
    ("add a key to B's app", "control", "post", "/api/1/app/{B.app_id}/key", "A.session", {}, {403}),
    ("revoke B's key", "control", "delete", "/api/1/app/{B.app_id}/key/{B.key_id}", "A.session", {}, {403}),
    (
        "revoke B's key through A's app",
        "control",
        "delete",
        "/api/1/app/{A.app_id}/key/{B.key_id}",
        "A.session",
        {},
        {403, 404},
    ),
    (
        "read the user with A's API key as a session",
        "control",
        "get",
        "/api/1/user",
        "A.key-as-session",
        {},
        {403},
    ),
    (
        "list B's apps with A's API key as a session",
        "control",
        "get",
        "/api/1/app?org_id={B.org_id}",
        "A.key-as-session",
        {},
        {403},
    ),
    # Barchart reports: another app's job is as unknown as a missing one.
    ("read B's report status", "control", "get", "/reports/{b[source]}/availability", "A.basic", None, {404}),
    ("download B's report", "control", "get", "/reports/{b[source]}", "A.basic", None, {404}),
    (
        "download B's report as B with A's key",
        "control",
        "get",
        "/reports/{b[source]}",
        "A.key-as-B",
        None,
        {401},
    ),
    ("start a report for B with A's key", "control", "post", "/reports", "A.key-as-B", REPORT, {401}),
    # Mews exports: getAll answers only the caller's own exports.
    (
        "get B's export",
        "control",
        "post",
        "/api/connector/v1/exports/getAll",
        "A.token",
        {"ExportIds": ["{b[export]}"]},
        {200},
    ),
    # Formance connectors and pipelines.
    ("list connectors", "control", "get", "/connectors", "A.basic", None, {200}),
    ("read B's connector", "control", "get", "/connectors/{b[connector]}", "A.basic", None, {404}),
    ("delete B's connector", "control", "delete", "/connectors/{b[connector]}", "A.basic", None, {404}),
    ("list pipelines", "control", "get", "/pipelines", "A.basic", None, {200}),
    ("read B's pipeline", "control", "get", "/pipelines/{b[pipeline]}", "A.basic", None, {404}),
    ("pause B's pipeline", "control", "post", "/pipelines/{b[pipeline]}/pause", "A.basic", None, {404}),
    ("reset B's pipeline", "control", "post", "/pipelines/{b[pipeline]}/reset", "A.basic", None, {404}),
    ("delete B's pipeline", "control", "delete", "/pipelines/{b[pipeline]}", "A.basic", None, {404}),
    (
        "pipe events into B's connector",
        "control",
        "post",
        "/pipelines",
        "A.basic",
        {"module": "events", "connectorID": "{b[connector]}"},
        {404},
    ),
    ("list B's pipelines with A's session", "control", "get", "/pipelines", "A.session-as-B", None, {401}),
    (
        "pause B's pipeline with A's session",
        "control",
        "post",
        "/pipelines/{b[pipeline]}/pause",
        "A.session-as-B",
        None,
        {401},
    ),
    *[(f"with A's ingest key, {what}", *rest) for what, *rest in INGEST_KEY_CASES],
]


@pytest.fixture
def world(stack, names, provisioned, outbox, db):
    a, b = person(db), person(db)
    ingest = create_ingest(stack.settings(IngestSettings, **names, key_cache_seconds=0)).test_client()
    control = client_for(control_app(stack, outbox, **names))
    return {
        "A": Tenant(a, logged_in(db, a.email), make_things(control, a), *ingest_key(db, a)),
        "B": Tenant(b, logged_in(db, b.email), make_things(control, b), *ingest_key(db, b)),
        "ingest": ingest,
        "control": control,
    }


def ingest_key(db, who: Person) -> tuple[int, str]:
    with db.connection() as conn:
        return tenancy.create_key(conn, who.app_id, KeyScope.INGEST)


def make_things(control, who: Person) -> dict:
    """A report job, an export, a connector and a pipeline of `who`'s app, made through the APIs."""
    auth = (str(who.app_id), who.api_key)
    source = control.post("/reports", json=REPORT, auth=auth).json["source"]
    export = control.post(
        "/api/connector/v1/exports/add", json={**mews_tokens(who.api_key), "EntityType": "Event"}
    ).json["Export"]["Id"]
    connector = control.post("/connectors", json={"driver": "noop", "config": {}}, auth=auth).json["data"][
        "id"
    ]
    pipeline = control.post(
        "/pipelines", json={"module": "events", "connectorID": connector}, auth=auth
    ).json["data"]["id"]
    return {"source": source, "export": export, "connector": connector, "pipeline": pipeline}


def mews_tokens(access_token: str) -> dict:
    return {"ClientToken": "matrix-client", "AccessToken": access_token, "Client": "Matrix 1.0"}


def _fill(value, world):
    if isinstance(value, str):
        return value.format(A=world["A"].who, B=world["B"].who, a=world["A"].things, b=world["B"].things)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return value


def _request(world, service, method, path, credential, body):
    a, b = world["A"], world["B"]
    kwargs = {"json": _fill(body, world)} if body is not None else {}
    if credential == "A.session":
        kwargs["json"] = {**kwargs["json"], "session_key": a.session_key}
    elif credential == "A.key-as-session":
        kwargs["json"] = {**kwargs["json"], "session_key": a.who.api_key}
    elif credential == "A.key-as-B":
        kwargs["auth"] = (str(b.who.app_id), a.who.api_key)
    elif credential == "A.basic":
        kwargs["auth"] = (str(a.who.app_id), a.who.api_key)
    elif credential == "A.token":
        kwargs["json"] = {**kwargs["json"], **mews_tokens(a.who.api_key)}
    elif credential == "A.ingest-basic":
        kwargs["auth"] = (str(a.who.app_id), a.ingest_key)
    elif credential == "A.ingest-token":
        kwargs["json"] = {**kwargs["json"], **mews_tokens(a.ingest_key)}
    elif credential == "A.ingest-as-session":
        kwargs["json"] = {**kwargs["json"], "session_key": a.ingest_key}
    elif credential == "A.session-as-B":
        kwargs["headers"] = {"X-Sluice-App": str(b.who.app_id), "Cookie": f"session_key={a.session_key}"}
    return getattr(world[service], method)(_fill(path, world), **kwargs)


def assert_untouched(world, db, name: str):
    """The tenant's app, keys, jobs, connectors and pipelines are as they were made."""
    t = world[name]
    with db.connection() as conn:
        apps = tenancy.list_apps(conn, t.who.org_id)
        assert [(app["app_id"], [k["key_id"] for k in app["keys"]]) for app in apps] == [
            (t.who.app_id, [t.who.key_id, t.ingest_key_id])
        ]
        assert tenancy.app_for_key(conn, t.who.api_key) == t.who.app_id
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM render_jobs WHERE app_id = %s", (t.who.app_id,))
            assert cur.fetchone()[0] == 2
    control, auth = world["control"], (str(t.who.app_id), t.who.api_key)
    assert control.get(f"/reports/{t.things['source']}/availability", auth=auth).status_code == 200
    connectors = control.get("/connectors", auth=auth).json["cursor"]["data"]
    assert [c["id"] for c in connectors] == [t.things["connector"]]
    pipelines = control.get("/pipelines", auth=auth).json["cursor"]["data"]
    assert [p["id"] for p in pipelines] == [t.things["pipeline"]]
    assert pipelines[0]["state"]["label"] in ("INIT", "READY")
    exports = control.post(
        "/api/connector/v1/exports/getAll",
        json={**mews_tokens(t.who.api_key), "ExportIds": [t.things["export"]]},
    ).json
    assert [e["Id"] for e in exports["Exports"]] == [t.things["export"]]


@pytest.mark.parametrize(
    "what, service, method, path, credential, body, allowed", CASES, ids=[case[0] for case in CASES]
)
def test_a_credential_of_app_a_cannot_touch_app_b(
    world, db, what, service, method, path, credential, body, allowed
):
    resp = _request(world, service, method, path, credential, body)
    text = resp.get_data(as_text=True)
    assert resp.status_code in allowed, (what, resp.status_code, text)
    b_app_id = re.compile(rf"(?<![\w-]){world['B'].who.app_id}(?![\w-])")  # not inside a uuid
    assert not b_app_id.search(text) or service == "ingest"
    asked = _fill(path, world) + str(_fill(body, world))  # echoing the caller's own input is fine
    assert not any(t in text for t in world["B"].things.values() if t not in asked), (what, text)
    assert_untouched(world, db, "A")
    assert_untouched(world, db, "B")
    # B's own credentials still work where A's were refused.
    auth = (str(world["B"].who.app_id), world["B"].who.api_key)
    assert world["ingest"].post("/events", json=[EVENT], auth=auth).status_code == 200


def test_each_user_sees_only_their_own_orgs_and_apps(world):
    a, b = world["A"], world["B"]
    user = world["control"].get("/api/1/user", json={"session_key": a.session_key}).json
    assert [org["org_id"] for org in user["org_list"]] == [a.who.org_id]
    apps = world["control"].get(f"/api/1/app?org_id={a.who.org_id}", json={"session_key": a.session_key}).json
    assert [app["app_id"] for app in apps["app_list"]] == [a.who.app_id]
    assert b.who.api_key[:10] not in str(apps)


def test_revoked_keys_and_deleted_apps_are_refused_everywhere(world, db):
    a = world["A"].who
    control = world["control"].application
    with db.connection() as conn:
        _, second = tenancy.create_key(conn, a.app_id, KeyScope.ADMIN)
        assert tenancy.revoke_key(conn, a.app_id, a.key_id)
    for key, works in ((a.api_key, False), (second, True)):
        expected = 200 if works else 401
        assert (
            world["ingest"].post("/events", json=[EVENT], auth=(str(a.app_id), key)).status_code == expected
        )
        with control.test_request_context(
            headers={"Authorization": _basic(a.app_id, key)}, environ_base=ELSEWHERE
        ):
            assert auth.basic_app() == (a.app_id if works else None)
            assert auth.app_for_token(key) == (a.app_id if works else None)

    with db.connection() as conn:
        assert tenancy.delete_app(conn, a.app_id)
    assert world["ingest"].post("/events", json=[EVENT], auth=(str(a.app_id), second)).status_code == 401
    with control.test_request_context(
        headers={"Authorization": _basic(a.app_id, second)}, environ_base=ELSEWHERE
    ):
        assert auth.basic_app() is None and auth.app_for_token(second) is None
    listed = world["control"].get(
        f"/api/1/app?org_id={a.org_id}", json={"session_key": world["A"].session_key}
    )
    assert listed.json["app_list"] == []


def _basic(user, password) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_session_key_acts_for_its_own_orgs_apps_on_pipelines(world):
    a = world["A"]
    headers = {"X-Sluice-App": str(a.who.app_id), "Cookie": f"session_key={a.session_key}"}
    listed = world["control"].get("/pipelines", headers=headers)
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json["cursor"]["data"]] == [a.things["pipeline"]]
    assert world["control"].get("/pipelines", headers={"X-Sluice-App": str(a.who.app_id)}).status_code == 401
