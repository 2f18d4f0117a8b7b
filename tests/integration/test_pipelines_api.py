"""Connectors and pipelines on the control API (Formance contract) against the real Postgres."""

import uuid
from urllib.parse import urlsplit

import pytest

from services import tenancy
from services.control.app import create_app
from services.settings import ControlSettings
from shared.enums import KeyScope

HTTP = {"driver": "http", "config": {"url": "https://93.184.216.34/hook"}}


@pytest.fixture
def client(stack):
    return create_app(stack.settings(ControlSettings)).test_client()


@pytest.fixture
def api(client, tenant):
    """The test client acting for the tenant's app (HTTP Basic)."""
    auth = (str(tenant[0]), tenant[1])

    class Api:
        app_id = tenant[0]

        def get(self, path, **kw):
            return client.get(path, auth=auth, **kw)

        def post(self, path, json=None, **kw):
            return client.post(path, json=json, auth=auth, **kw)

        def delete(self, path):
            return client.delete(path, auth=auth)

        def connector(self, body=HTTP):
            resp = self.post("/connectors", json=body)
            assert resp.status_code == 201, resp.json
            return resp.json["data"]

        def pipeline(self, connector_id, module="events"):
            resp = self.post("/pipelines", json={"module": module, "connectorID": connector_id})
            assert resp.status_code == 201, resp.json
            return resp.json["data"]

        def state(self, pipeline_id):
            return self.get(f"/pipelines/{pipeline_id}").json["data"]["state"]

    return Api()


@pytest.fixture
def other_api(client, db):
    with db.connection() as conn:
        org_id = tenancy.create_org(conn, f"org-{uuid.uuid4().hex[:8]}")
        app_id = tenancy.create_app(conn, org_id, "other")
        _, key = tenancy.create_key(conn, app_id, KeyScope.ADMIN)
    auth = (str(app_id), key)

    class Other:
        def get(self, path):
            return client.get(path, auth=auth)

        def post(self, path, json=None):
            return client.post(path, json=json, auth=auth)

        def delete(self, path):
            return client.delete(path, auth=auth)

    return Other()


def test_connector_is_created_read_listed_and_deleted_in_the_documents_shapes(api):
    created = api.connector(
        {
            "driver": "http",
            "config": {
                "url": "https://example.com/in",
                "headers": {"X-Token": "t"},
                "batching": {"maxItems": 50, "flushInterval": "1s"},
            },
        }
    )
    assert set(created) >= {"id", "createdAt", "driver", "config"}
    assert created["driver"] == "http" and created["config"]["url"] == "https://example.com/in"
    assert created["config"]["headers"] == {"X-Token": "<redacted>"}
    assert created["createdAt"].endswith("Z")
    got = api.get(f"/connectors/{created['id']}")
    assert got.status_code == 200 and got.json["data"] == created
    listed = api.get("/connectors").json["cursor"]
    assert listed["pageSize"] == 15 and listed["hasMore"] is False
    assert [c["id"] for c in listed["data"]] == [created["id"]]
    assert api.delete(f"/connectors/{created['id']}").status_code == 204
    gone = api.get(f"/connectors/{created['id']}")
    assert gone.status_code == 404 and gone.json["errorCode"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"driver": "ftp", "config": {}}, "driver"),
        ({"driver": "http", "config": {}}, "config.url"),
        ({"driver": "http", "config": {"url": "not a url"}}, "config.url"),
        (
            {"driver": "http", "config": {"url": "http://x.io", "batching": {"maxItems": 0}}},
            "config.batching.maxItems",
        ),
        (
            {"driver": "http", "config": {"url": "http://x.io", "batching": {"flushInterval": "soon"}}},
            "config.batching.flushInterval",
        ),
        (  # a 401-digit number of seconds: beyond any float
            {"driver": "http", "config": {"url": "http://x.io", "batching": {"flushInterval": 10**400}}},
            "config.batching.flushInterval",
        ),
        ({"driver": "s3", "config": {"prefix": "a/"}}, "config.bucket"),
        ({"driver": "noop", "config": {"surprise": 1}}, "config.surprise"),
        ({"driver": "stdout"}, "config"),
        ([1, 2], "body"),
    ],
)
def test_a_wrong_connector_config_is_a_400_validation_naming_the_field(api, body, field):
    resp = api.post("/connectors", json=body)
    assert resp.status_code == 400
    assert resp.json["errorCode"] == "VALIDATION" and resp.json["errorMessage"].startswith(field), resp.json


def test_malformed_json_and_missing_credentials_get_formance_errors(client, api):
    resp = api.post("/connectors", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400 and resp.json["errorCode"] == "VALIDATION"
    for path in ("/connectors", "/pipelines"):
        resp = client.get(path)
        assert resp.status_code == 401 and set(resp.json) == {"errorCode", "errorMessage"}
        assert client.get(path, auth=("1", "sk_wrong")).status_code == 401


def test_pipeline_starts_in_init_and_moves_through_the_state_machine(api):
    pipeline = api.pipeline(api.connector()["id"])
    assert pipeline["state"] == {"label": "INIT", "cursor": ""}
    assert pipeline["module"] == "events" and "createdAt" in pipeline
    pid = pipeline["id"]

    def act(action, status=202):
        resp = api.post(f"/pipelines/{pid}/{action}")
        assert resp.status_code == status, (action, resp.json)
        return api.state(pid)

    assert act("pause") == {"label": "PAUSE", "cursor": "", "previousState": {"label": "INIT"}}
    assert api.post(f"/pipelines/{pid}/pause").json["errorCode"] == "CONFLICT"
    act("start", 409)
    assert act("stop") == {
        "label": "STOP",
        "cursor": "",
        "previousState": {"label": "PAUSE", "previousState": {"label": "INIT"}},
    }
    act("resume", 409)
    act("stop", 409)
    assert act("start")["label"] == "PAUSE"
    assert act("resume") == {"label": "INIT", "cursor": ""}
    act("resume", 409)
    assert api.post(f"/pipelines/{pid}/explode").json["errorCode"] == "NOT_FOUND"
    assert act("stop")["label"] == "STOP"
    assert act("reset") == {"label": "INIT", "cursor": ""}


def test_one_pipeline_per_module_and_connector_and_a_used_connector_cannot_go(api):
    connector = api.connector()
    first = api.pipeline(connector["id"])
    dup = api.post("/pipelines", json={"module": "events", "connectorID": connector["id"]})
    assert dup.status_code == 409 and dup.json["errorCode"] == "CONFLICT"
    api.pipeline(connector["id"], module="api_calls")
    resp = api.delete(f"/connectors/{connector['id']}")
    assert resp.status_code == 400 and resp.json["errorCode"] == "VALIDATION"
    assert api.delete(f"/pipelines/{first['id']}").status_code == 204
    assert api.get(f"/pipelines/{first['id']}").status_code == 404


@pytest.mark.parametrize(
    "body, status",
    [
        ({"module": "logs", "connectorID": "x"}, 400),
        ({"connectorID": "x"}, 400),
        ({"module": "events", "connectorID": str(uuid.uuid4())}, 404),
        ({"module": "events", "connectorID": "not-a-uuid"}, 404),
    ],
)
def test_bad_pipeline_requests(api, body, status):
    resp = api.post("/pipelines", json=body)
    assert resp.status_code == status and resp.json["errorCode"] in ("VALIDATION", "NOT_FOUND")


def test_another_apps_connectors_and_pipelines_are_not_found(api, other_api):
    connector = api.connector()
    pipeline = api.pipeline(connector["id"])
    for resp in (
        other_api.get(f"/connectors/{connector['id']}"),
        other_api.delete(f"/connectors/{connector['id']}"),
        other_api.post("/pipelines", json={"module": "events", "connectorID": connector["id"]}),
        other_api.get(f"/pipelines/{pipeline['id']}"),
        other_api.delete(f"/pipelines/{pipeline['id']}"),
        other_api.post(f"/pipelines/{pipeline['id']}/pause"),
        other_api.post(f"/pipelines/{pipeline['id']}/reset"),
    ):
        assert resp.status_code == 404 and resp.json["errorCode"] == "NOT_FOUND", resp.json
    assert other_api.get("/connectors").json["cursor"]["data"] == []
    assert other_api.get("/pipelines").json["cursor"]["data"] == []
    assert api.state(pipeline["id"])["label"] == "INIT"  # untouched


def test_list_pages_follow_cursors_both_ways_and_stay_stable_as_rows_are_added(api):
    ids = [api.connector()["id"] for _ in range(5)]
    first = api.get("/connectors?pageSize=2").json["cursor"]
    assert [c["id"] for c in first["data"]] == ids[:2] and first["hasMore"] and first["previous"] == ""
    added = api.connector()["id"]  # a new row must not shift the pages already handed out
    second = api.get(f"/connectors?cursor={first['next']}").json["cursor"]
    assert [c["id"] for c in second["data"]] == ids[2:4] and second["pageSize"] == 2
    back = api.get(f"/connectors?cursor={second['previous']}").json["cursor"]
    assert [c["id"] for c in back["data"]] == ids[:2]
    last = api.get(f"/connectors?cursor={second['next']}").json["cursor"]
    assert [c["id"] for c in last["data"]] == [ids[4], added] and last["hasMore"] is False
    assert last["next"] == ""


@pytest.mark.parametrize(
    "query",
    [
        "pageSize=0",
        "pageSize=1001",
        "pageSize=ten",
        "cursor=bm9wZQ",
        "cursor=%%%",
        "cursor=eyJkIjoibiIsImsiOnRydWV9",  # {"d": "n", "k": true}
        "cursor=eyJkIjoibiIsImsiOjEsIm4iOnRydWV9",  # a page size of true
        "cursor=eyJkIjoicCIsImsiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9",  # a position beyond bigint
    ],
)
def test_bad_page_parameters_are_400(api, query):
    for path in ("/connectors", "/pipelines"):
        resp = api.get(f"{path}?{query}")
        assert resp.status_code == 400 and resp.json["errorCode"] == "VALIDATION", (path, resp.json)


# --- where a connector may deliver -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/api/1/user",  # the control API itself
        "http://169.254.169.254/latest/meta-data/",  # the cloud's instance metadata
        "http://[::1]:6379/",  # Redis
        "http://localhost:5432/",  # Postgres
        "http://[::ffff:127.0.0.1]:8000/",
        "http://0x7f000001:9000/",  # 127.0.0.1 in hexadecimal
        "http://10.0.0.8/",
        "http://[fd00:ec2::254]/",
    ],
)
def test_a_connector_to_the_services_network_is_a_400(api, url):
    resp = api.post("/connectors", json={"driver": "http", "config": {"url": url}})
    assert resp.status_code == 400, resp.json
    assert resp.json["errorCode"] == "VALIDATION" and resp.json["errorMessage"].startswith("config.url: ")


def test_loopback_is_allowed_only_when_the_operator_says_so_and_the_services_ports_never(stack, tenant):
    auth = (str(tenant[0]), tenant[1])
    allowed = create_app(
        stack.settings(ControlSettings, connector_allowed_networks="127.0.0.0/8, ::1/128")
    ).test_client()

    def create(url):
        return allowed.post("/connectors", json={"driver": "http", "config": {"url": url}}, auth=auth)

    assert create("http://127.0.0.1:9/hook").status_code == 201
    assert create("http://[::1]:9/hook").status_code == 201
    for service in (stack.database_url, stack.redis_url, stack.aws_endpoint_url):
        address = urlsplit(service).netloc.rpartition("@")[2]
        assert create(f"http://{address}/").status_code == 400, address
    for url in ("http://127.0.0.1:8001/", "http://localhost:8000/", "http://169.254.169.254/"):
        assert create(url).status_code == 400, url


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "internal.example"},
        {"content-length": "5"},
        {"Transfer-Encoding": "chunked"},
        {"Connection": "Upgrade"},
        {"Proxy-Authorization": "Basic eDp5"},
        {"X-Injected": "1\r\nHost: internal.example"},
    ],
)
def test_headers_a_tenant_may_not_set_are_a_400(api, headers):
    resp = api.post("/connectors", json={"driver": "http", "config": {**HTTP["config"], "headers": headers}})
    assert resp.status_code == 400 and resp.json["errorMessage"].startswith("config.headers"), resp.json


def test_connector_secrets_are_write_only(api):
    http = api.connector(
        {"driver": "http", "config": {**HTTP["config"], "headers": {"Authorization": "Bearer s3cr3t"}}}
    )
    keys = api.connector(
        {
            "driver": "s3",
            "config": {
                "bucket": "tenant-bucket",
                "accessKeyId": "AKIAEXAMPLE12345",
                "secretAccessKey": "s3cr3t",
            },
        }
    )
    role = api.connector(
        {"driver": "s3", "config": {"bucket": "tenant-bucket", "roleArn": "arn:aws:iam::123456789012:role/w"}}
    )
    listed = api.get("/connectors").json["cursor"]["data"]
    for read in (listed, [api.get(f"/connectors/{c['id']}").json["data"] for c in (http, keys, role)]):
        assert "s3cr3t" not in str(read)
    assert http["config"]["headers"] == {"Authorization": "<redacted>"}
    assert (
        keys["config"]["secretAccessKey"] == "<redacted>"
        and keys["config"]["accessKeyId"] == "AKIAEXAMPLE12345"
    )
    assert role["config"]["externalId"] == f"sluice-app-{api.app_id}"


@pytest.mark.parametrize(
    "credentials",
    [
        {},  # the service's own
        {"accessKeyId": "AKIAEXAMPLE12345", "secretAccessKey": "s"},
        {"roleArn": "arn:aws:iam::123456789012:role/w"},
    ],
)
def test_the_exports_bucket_is_never_an_s3_connectors_destination(stack, api, credentials):
    exports = stack.settings(ControlSettings).exports_bucket
    resp = api.post("/connectors", json={"driver": "s3", "config": {"bucket": exports, **credentials}})
    assert resp.status_code == 400 and resp.json["errorMessage"].startswith("config.bucket: "), resp.json
    prefixed = {"bucket": exports, "prefix": "exports/1/", **credentials}  # another app's files
    assert api.post("/connectors", json={"driver": "s3", "config": prefixed}).status_code == 400


def test_the_services_own_credentials_only_for_buckets_the_operator_lists(stack, tenant, api):
    resp = api.post("/connectors", json={"driver": "s3", "config": {"bucket": "any-bucket"}})
    assert resp.status_code == 400 and "SLUICE_CONNECTOR_S3_SERVICE_BUCKETS" in resp.json["errorMessage"]
    listed = create_app(
        stack.settings(ControlSettings, connector_s3_service_buckets="drop-zone")
    ).test_client()
    auth = (str(tenant[0]), tenant[1])
    config = {"driver": "s3", "config": {"bucket": "drop-zone"}}
    assert listed.post("/connectors", json=config, auth=auth).status_code == 201
