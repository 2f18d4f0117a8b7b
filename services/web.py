"""What every Sluice HTTP service has: health, readiness, metrics, OpenAPI, version, JSON errors,
and the one way views reach the service's settings and database.
"""

import os
import time
from importlib import metadata

from flask import Flask, Response, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from services import api_errors

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


def install_common(app: Flask, service: str, readiness_checks: dict, openapi: dict) -> None:
    """Add /healthz, /readyz, /metrics, /openapi.json, /system/version and JSON error pages.

    readiness_checks maps a dependency name to a callable that raises when it does not answer.
    """
    app.json = SafeJSONProvider(app)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
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
    def metrics():
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # gunicorn: add up every worker's samples
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    def openapi_json():
        return jsonify(openapi)

    @app.get("/system/version")
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


def settings():
    """The running service's settings object."""
    return current_app.config["SETTINGS"]


def database():
    """The running service's Postgres pool (services.database.Database)."""
    return current_app.config["DB"]


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule else "unmatched"


def openapi_document(title: str, paths: dict) -> dict:
    return {"openapi": "3.0.3", "info": {"title": title, "version": version()}, "paths": paths}
