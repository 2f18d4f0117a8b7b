"""The control API under gunicorn cuts off a chunked body (no Content-Length) once it passes
SLUICE_CONTROL_MAX_BODY_BYTES, in each document's error shape."""

import requests

LIMIT = 1000


def chunks(start: bytes, end: bytes):
    """A body sent chunked: requests cannot tell its length, so it sends no Content-Length."""
    yield start
    for _ in range(100):
        yield b"x" * 100
    yield end


def test_a_chunked_body_over_the_limit_is_refused_in_each_documents_shape(services, tenant):
    control = services.control(SLUICE_CONTROL_MAX_BODY_BYTES=str(LIMIT))
    auth = (str(tenant[0]), tenant[1])
    json_body = (b'{"email": "', b'@example.com"}')
    for path, content_type, body, code in (
        ("/api/1/login", "application/json", json_body, lambda j: j["error"]["code"]),
        ("/api/1/login", "application/x-www-form-urlencoded", (b"email=", b"%40example.com"), None),
        ("/connectors", "application/json", (b'{"driver": "', b'"}'), lambda j: j["errorCode"]),
        (
            "/reports",
            "application/json",
            (b'{"filter": {"customer": "', b'"}}'),
            lambda j: j[0]["value"]["code"],
        ),
        ("/api/connector/v1/exports/add", "application/json", json_body, lambda j: j["error"]["code"]),
    ):
        resp = requests.post(
            control.url + path,
            data=chunks(*body),
            headers={"Content-Type": content_type},
            auth=auth,
            timeout=30,
        )
        assert resp.request.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status_code == 413, (path, content_type, resp.status_code, resp.text[:300])
        assert (code or (lambda j: j["error"]["code"]))(resp.json()) == "PAYLOAD_TOO_LARGE", path
