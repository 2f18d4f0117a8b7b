"""The control API's application factory: `gunicorn 'services.control.app:create_app()'`."""
import redis
from flask import Flask

from services import aws
from services.pg import Database
from services.settings import ControlSettings
from services.web import install_common, openapi_document
from services import ratelimit  # issue 6
from services.control import accounts  # issue 6

OPENAPI_PATHS = {
    "/system/version": {"get": {"summary": "Get version",
                                "responses": {"200": {"description": "Version"}}}},
}
OPENAPI_PATHS.update(accounts.OPENAPI_PATHS)


def create_app(settings: ControlSettings | None = None) -> Flask:
    settings = settings or ControlSettings.from_env()
    app = Flask("sluice.control")
    db = Database(settings.database_url)
    app.config.update(SETTINGS=settings, DB=db)

    def s3_ready():
        aws.client(settings, "s3").head_bucket(Bucket=settings.exports_bucket)

    def redis_ready():
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()

    ratelimit.install(app)
    app.register_blueprint(accounts.bp)
    install_common(app, "control", {"postgres": db.ping, "redis": redis_ready, "s3": s3_ready},
                   openapi_document("Sluice control API", OPENAPI_PATHS))
    return app
