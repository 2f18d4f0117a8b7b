"""The control API's request bodies: one size limit on every route, checked before anything reads
the body, and encodings it cannot read refused in each document's error shape."""

import pytest

from services import api_errors
from services.control.app import create_app
from services.settings import ControlSettings
from tests.helpers import client_for

LIMIT = 1000


@pytest.fixture
def control(stack, names, provisioned):
    return create_app(stack.settings(ControlSettings, **names, max_body_bytes=LIMIT))


def routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<int:", "<").replace("<action>", "pause")
        path = path.replace("<", "").replace(">", "")  # any value: the body is refused first
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint.rpartition(".")[0] or None, method, path


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{" + b'"email": "' + b"x" * LIMIT + b'@example.com"}', "application/json"),
        (b"email=" + b"x" * LIMIT + b"%40example.com", "application/x-www-form-urlencoded"),
        (b"{not json at all" + b" " * LIMIT, "application/json"),
    ],
    ids=["json", "form", "malformed"],
)
def test_every_route_refuses_a_body_over_the_limit_before_reading_it(control, tenant, body, content_type):
    client = client_for(control)
    expected = {}
    for blueprint, method, path in routes(control):
        # With a valid key the body is the only thing wrong; without one the 413 still comes first.
        for auth in (None, (str(tenant[0]), tenant[1])):
            resp = client.open(path, method=method, data=body, content_type=content_type, auth=auth)
            shape, _ = api_errors.shapes(control, blueprint)
            assert resp.status_code == 413, (method, path, resp.status_code, resp.get_data(as_text=True))
            expected = shape("PAYLOAD_TOO_LARGE", f"Body is over {LIMIT} bytes.")
            assert resp.json == expected, (method, path)
    assert expected  # the loop ran


def test_a_body_at_the_limit_is_read(control):
    email = "a@example.com"
    padded = ('{"email": "' + email + '"' + " " * LIMIT)[: LIMIT - 1] + "}"
    assert len(padded) == LIMIT
    resp = client_for(control).post("/api/1/login", data=padded, content_type="application/json")
    assert resp.status_code != 413


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "gzip, br"])
def test_encodings_other_than_gzip_are_415_in_each_documents_shape(control, tenant, encoding):
    client = client_for(control)
    key = tenant[1]
    headers = {"Content-Encoding": encoding}
    mews = {"ClientToken": "c", "AccessToken": key, "Client": "c"}
    for path, body, error in (
        ("/api/connector/v1/exports/add", {**mews, "EntityType": "Event"}, lambda j: j["error"]["code"]),
        ("/api/connector/v1/exports/getAll", {**mews, "ExportIds": []}, lambda j: j["error"]["code"]),
        ("/reports", {"filter": {"customer": "A", "product": "B"}}, lambda j: j[0]["value"]["code"]),
        ("/connectors", {"driver": "noop", "config": {}}, lambda j: j["errorCode"]),
    ):
        resp = client.post(path, json=body, headers=headers, auth=(str(tenant[0]), key))
        assert resp.status_code == 415, (path, resp.get_data(as_text=True))
        assert error(resp.json) == "UNSUPPORTED_ENCODING", path
