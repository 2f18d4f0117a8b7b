"""What every Sluice HTTP service has: health, readiness, metrics, OpenAPI, version, JSON errors,
and the one way views reach the service's settings and database.
"""

import os
import time
from importlib import metadata

from flask import Flask, Response, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import Schema, fields
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.middleware.proxy_fix import ProxyFix

from services import api_errors, openapi
from services.openapi import documented

HTTP_REQUESTS = Counter("sluice_http_requests", "HTTP requests answered", ["service", "endpoint", "status"])
HTTP_DURATION = Histogram(
    "sluice_http_request_duration_seconds",
    "time from reading a request to its answer",
    ["service", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def version() -> str:
    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class SafeJSONProvider(DefaultJSONProvider):
    """Deeply nested JSON is malformed input (a 400), not a RecursionError (a 500).

    werkzeug's get_json() turns ValueError into a 400 (or None when silent), but lets a
    RecursionError from the parser through.
    """

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"description": "ok or unavailable"})
    checks = fields.Dict(
        keys=fields.String(), values=fields.String(), required=True, metadata={"description": "ok or why not"}
    )


class VersionSchema(Schema):
    version = fields.String(required=True)


_OPENAPI_SCHEMA = {"type": "object", "description": "this document"}


def install_common(
    app: Flask, service: str, readiness_checks: dict, title: str, description: str, every_route_errors: dict
) -> None:
    """Add /healthz, /readyz, /metrics, /openapi.json, /system/version and JSON error pages.

    readiness_checks maps a dependency name to a callable that raises when it does not answer.
    /openapi.json is generated from the app's documented routes (services/openapi.py) when it is
    first asked for, so it holds every route registered by then; every_route_errors are the
    {status: description} any route of this app can answer.
    """
    app.json = SafeJSONProvider(app)

    @app.get("/healthz")
    @documented("Alive", answers={200: ("The process answers.", HealthSchema)}, security=[])
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    @documented(
        "Ready: every dependency answers",
        answers={
            200: ("Every dependency answers.", ReadinessSchema),
            503: ("A dependency does not answer; checks names it.", ReadinessSchema),
        },
        security=[],
    )
    def readyz():
        results, ready = {}, True
        for name, check in readiness_checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # any failure means "not ready"; say which and why
                results[name] = f"error: {type(exc).__name__}"
                ready = False
        return jsonify(status="ok" if ready else "unavailable", checks=results), 200 if ready else 503

    @app.get("/metrics")
    @documented(
        "Prometheus metrics",
        answers={200: ("Prometheus text format.", {"text/plain": {"type": "string"}})},
        security=[],
    )
    def metrics():
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn: add up every worker's samples
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    @documented("This OpenAPI document", answers={200: ("OpenAPI 3.0", _OPENAPI_SCHEMA)}, security=[])
    def openapi_json():
        if "openapi" not in app.extensions:
            app.extensions["openapi"] = openapi.document(
                app, title, version(), description, every_route_errors
            )
        return jsonify(app.extensions["openapi"])

    @app.get("/system/version")
    @documented("The running version", answers={200: ("Version of the API.", VersionSchema)}, security=[])
    def system_version():
        return jsonify(version=version())

    api_errors.install(app)

    def start_clock():
        g.sluice_started = time.perf_counter()

    # First of all before-request hooks, so a request the rate limiter refuses is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_clock)

    @app.after_request
    def count(response):
        endpoint = _endpoint()
        HTTP_REQUESTS.labels(service, endpoint, str(response.status_code)).inc()
        started = g.get("sluice_started")
        if started is not None:  # None only if the request failed before any hook ran
            HTTP_DURATION.labels(service, endpoint).observe(time.perf_counter() - started)
        return response


def trust_proxies(app: Flask, hops: int) -> None:
    """Believe X-Forwarded-For, -Proto and -Host as set by the last `hops` proxies in front of the
    app, so that rate limits, logs and cookie flags see the real client address and scheme.

    With 0 (the default) forwarded headers are ignored: anyone can send them.
    """
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


def settings():
    """The running service's settings object."""
    return current_app.config["SETTINGS"]


def database():
    """The running service's Postgres pool (services.database.Database)."""
    return current_app.config["DB"]


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule else "unmatched"
