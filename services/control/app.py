"""The control API's application factory: `gunicorn 'services.control.app:create_app()'`."""
import redis
from celery import Celery
from flask import Flask

from services import aws, ratelimit
from services.control import accounts, exports, reports
from services.pg import Database
from services.settings import ControlSettings
from services.web import install_common, openapi_document

OPENAPI_PATHS = {
    "/system/version": {"get": {"summary": "Get version",
                                "responses": {"200": {"description": "Version"}}}},
}
OPENAPI_PATHS.update(accounts.OPENAPI_PATHS)
# issue 5: reports and exports
OPENAPI_PATHS.update({
    "/reports": {"post": {"summary": "Start report (Barchart)", "security": [{"basic": []}],
                          "responses": {"200": {"description": "Job"}, "400": {"description": "Bad filter"}}}},
    "/reports/{source}/availability": {"get": {"summary": "Check report status", "security": [{"basic": []}],
                                               "responses": {"200": {"description": "Job"}}}},
    "/reports/{source}": {"get": {"summary": "Download report: a presigned link", "security": [{"basic": []}],
                                  "responses": {"200": {"description": "{link}"},
                                                "409": {"description": "Not COMPLETE"}}}},
    "/api/connector/v1/exports/add": {"post": {"summary": "Add export (Mews)",
                                               "responses": {"200": {"description": "{Export}"}}}},
    "/api/connector/v1/exports/getAll": {"post": {"summary": "Get exports (Mews)",
                                                  "responses": {"200": {"description": "{Exports}"}}}},
})


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
    # issue 5: reports and exports. The Celery app only sends tasks (by name) to the workers.
    app.config.update(S3=aws.client(settings, "s3"),
                      CELERY=Celery("sluice-control", broker=settings.redis_url, set_as_current=False))
    app.register_blueprint(reports.bp)
    app.register_blueprint(exports.bp)
    install_common(app, "control", {"postgres": db.ping, "redis": redis_ready, "s3": s3_ready},
                   openapi_document("Sluice control API", OPENAPI_PATHS))
    return app
