"""Entry point for the Celery CLI: `celery -A services.worker.main worker`.

Celery's -A option needs a module attribute, so this module (and only this one) builds the app at
import time from the environment.
"""

from services.worker.celery_app import make_celery

app = make_celery()
