"""The ingest API's application factory: `gunicorn 'services.ingest.app:create_app()'`."""

import hashlib
import os
import tempfile

from flask import Flask

from services.database import Database
from services.ingest import api_calls, events
from services.ingest.keys import KeyCache
from services.ingest.queue import EventQueue
from services.settings import IngestSettings
from services.web import install_common, openapi_document, trust_proxies

OPENAPI_PATHS = {
    "/events": {
        "post": {
            "summary": "Create events (Barchart)",
            "security": [{"basic": []}],
            "responses": {"200": {"description": "Array of EventFull"}},
        }
    },
    "/system/version": {"get": {"summary": "Get version", "responses": {"200": {"description": "Version"}}}},
}
_MOESIF_ONE = {
    "post": {
        "summary": "Add one API call event (Moesif)",
        "parameters": [{"name": "X-Moesif-Application-Id", "in": "header", "required": True}],
        "responses": {"200": {"description": "Accepted onto the queue"}},
    }
}
_MOESIF_BATCH = {"post": {**_MOESIF_ONE["post"], "summary": "Add a batch of API call events (Moesif)"}}
_MOESIF_CONFIG = {
    "get": {
        "summary": "The app config Moesif's middlewares read: sample everything (X-Moesif-Config-ETag)",
        "parameters": _MOESIF_ONE["post"]["parameters"],
        "responses": {"200": {"description": "Config object"}},
    }
}
_MOESIF_RULES = {
    "get": {**_MOESIF_CONFIG["get"], "summary": "Governance rules for Moesif's middlewares: none"}
}
OPENAPI_PATHS.update(
    {
        "/moesifapi/events": _MOESIF_ONE,
        "/v1/events": _MOESIF_ONE,
        "/moesifapi/events/batch": _MOESIF_BATCH,
        "/v1/events/batch": _MOESIF_BATCH,
        "/moesifapi/v1/config": _MOESIF_CONFIG,
        "/v1/config": _MOESIF_CONFIG,
        "/moesifapi/v1/rules": _MOESIF_RULES,
        "/v1/rules": _MOESIF_RULES,
    }
)


def default_snapshot_path(settings: IngestSettings) -> str:
    """One key snapshot file per database, so two deployments on one host never share keys."""
    database = hashlib.sha256(settings.database_url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"sluice-ingest-keys-{os.getuid()}-{database}.json")


def create_app(settings: IngestSettings | None = None) -> Flask:
    settings = settings or IngestSettings.from_env()
    app = Flask("sluice.ingest")
    db = Database(settings.database_url, maxconn=8)
    queue = EventQueue(settings)
    keys = KeyCache(
        db, settings.key_cache_seconds, settings.key_snapshot_path or default_snapshot_path(settings)
    )
    keys.start_refreshing()  # gunicorn calls create_app in each worker, after the fork
    app.config.update(SETTINGS=settings, DB=db, QUEUE=queue, KEYS=keys)
    app.register_blueprint(events.bp)
    app.register_blueprint(api_calls.bp)
    install_common(app, "ingest", {"sqs": queue.ping}, openapi_document("Sluice ingest API", OPENAPI_PATHS))
    trust_proxies(app, settings.trusted_proxy_hops)  # for its access log: ingest reads no address
    return app
