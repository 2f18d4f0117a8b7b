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
from services.web import install_common, trust_proxies

DESCRIPTION = (
    "Producers post events here: Barchart events at /events, Moesif API calls at /moesifapi/events "
    "and /v1/events. A 200 means SQS holds every event of the request."
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
    install_common(app, "ingest", {"sqs": queue.ping}, "Sluice ingest API", DESCRIPTION, {})
    trust_proxies(app, settings.trusted_proxy_hops)  # for its access log: ingest reads no address
    return app
