"""The control API's application factory: `gunicorn 'services.control.app:create_app()'`."""
import redis
from flask import Flask

from services import aws
from services.control import connectors, pipelines
from services.pg import Database
from services.settings import ControlSettings
from services.web import install_common, openapi_document

OPENAPI_PATHS = {
    "/system/version": {"get": {"summary": "Get version",
                                "responses": {"200": {"description": "Version"}}}},
}
OPENAPI_PATHS.update(pipelines.OPENAPI_PATHS)


def create_app(settings: ControlSettings | None = None) -> Flask:
    settings = settings or ControlSettings.from_env()
    app = Flask("sluice.control")
    db = Database(settings.database_url)
    app.config.update(SETTINGS=settings, DB=db)
    app.register_blueprint(connectors.bp)
    app.register_blueprint(pipelines.bp)

    def s3_ready():
        aws.client(settings, "s3").head_bucket(Bucket=settings.exports_bucket)

    def redis_ready():
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()

    install_common(app, "control", {"postgres": db.ping, "redis": redis_ready, "s3": s3_ready},
                   openapi_document("Sluice control API", OPENAPI_PATHS))
    return app
