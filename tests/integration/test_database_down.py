"""With Postgres unreachable, the control API answers 503 with Retry-After, never a 500."""

import pytest

from devtools import devstack
from services.control.app import create_app
from services.settings import ControlSettings


@pytest.fixture
def control(stack, names, provisioned):
    nowhere = f"postgresql://sluice@127.0.0.1:{devstack.free_port()}/sluice"  # nothing listens there
    app = create_app(stack.settings(ControlSettings, **names, database_url=nowhere))
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.99.0.1"
    return client


@pytest.mark.parametrize(
    "method, path, body, shape",
    [
        ("post", "/reports", {"filter": {"customer": "ACME", "product": "WEB"}}, "error"),
        ("get", "/pipelines", None, "errorCode"),
        ("get", "/connectors/abc", None, "errorCode"),
        (
            "post",
            "/api/connector/v1/exports/add",
            {"ClientToken": "c", "AccessToken": "sk_x", "Client": "c", "EntityType": "Event"},
            "error",
        ),
    ],
)
def test_database_down_is_503_with_retry_after(control, method, path, body, shape):
    kwargs = {"json": body} if body is not None else {}
    resp = getattr(control, method)(path, auth=("1", "sk_some_key"), **kwargs)
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] and shape in resp.json


def test_readiness_names_postgres_as_the_missing_dependency(control):
    resp = control.get("/readyz")
    assert resp.status_code == 503 and resp.json["checks"]["postgres"].startswith("error")
