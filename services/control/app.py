"""The control API's application factory: `gunicorn 'services.control.app:create_app()'`."""

import redis
from celery import Celery
from flask import Flask

from services import aws
from services.control import accounts, connectors, exports, ops, pipelines, ratelimit, reports
from services.database import Database
from services.request_body import cap_bodies
from services.settings import ControlSettings
from services.web import install_common, trust_proxies

DESCRIPTION = (
    "Reports (Barchart), exports (Mews), accounts (Data Cortex), connectors and pipelines (Formance). "
    "Every request body is refused over SLUICE_CONTROL_MAX_BODY_BYTES with 413, before it is read."
)


def create_app(settings: ControlSettings | None = None) -> Flask:
    settings = settings or ControlSettings.from_env()
    app = Flask("sluice.control")
    db = Database(settings.database_url)
    # The Celery app only sends tasks (by name) to the workers.
    app.config.update(
        SETTINGS=settings,
        DB=db,
        S3=aws.client(settings, "s3"),
        CELERY=Celery("sluice-control", broker=settings.redis_url, set_as_current=False),
    )

    def s3_ready():
        app.config["S3"].head_bucket(Bucket=settings.exports_bucket)

    def redis_ready():
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()

    cap_bodies(app, settings.max_body_bytes)
    ratelimit.install(app)
    for blueprint in (accounts, reports, exports, connectors, pipelines, ops):
        app.register_blueprint(blueprint.bp)
    install_common(
        app,
        "control",
        {"postgres": db.ping, "redis": redis_ready, "s3": s3_ready},
        "Sluice control API",
        DESCRIPTION,
        {413: f"The body is over SLUICE_CONTROL_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)."},
    )
    trust_proxies(app, settings.trusted_proxy_hops)
    return app
