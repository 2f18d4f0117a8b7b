"""The ingest API's application factory: `gunicorn 'services.ingest.app:create_app()'`."""
from flask import Flask

from services.ingest import events
from services.ingest.keys import KeyCache
from services.ingest.queue import EventQueue
from services.pg import Database
from services.settings import IngestSettings
from services.web import install_common, openapi_document

OPENAPI_PATHS = {
    "/events": {"post": {"summary": "Create events (Barchart)", "security": [{"basic": []}],
                         "responses": {"200": {"description": "Array of EventFull"}}}},
    "/system/version": {"get": {"summary": "Get version",
                                "responses": {"200": {"description": "Version"}}}},
}


def create_app(settings: IngestSettings | None = None) -> Flask:
    settings = settings or IngestSettings.from_env()
    app = Flask("sluice.ingest")
    db = Database(settings.database_url, maxconn=8)
    queue = EventQueue(settings)
    app.config.update(SETTINGS=settings, DB=db, QUEUE=queue,
                      KEYS=KeyCache(db, settings.key_cache_seconds))
    app.register_blueprint(events.bp)
    install_common(app, "ingest", {"sqs": queue.ping},
                   openapi_document("Sluice ingest API", OPENAPI_PATHS))
    return app
