"""Entry point for the Celery CLI: `celery -A services.worker.main worker`.

Celery's -A option needs a module attribute, so this module (and only this one) builds the app at
import time from the environment.

Renders run in the pool's child processes; their metrics reach the main process's /metrics through
prometheus_client's multiprocess mode, which must be chosen before prometheus_client is first
imported, so before anything below and before the pool forks. Without PROMETHEUS_MULTIPROC_DIR
from outside, each worker takes a fresh directory of its own and removes it when it exits.
"""

import atexit
import os
import shutil
import tempfile

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _directory, _owner = tempfile.mkdtemp(prefix="sluice-worker-metrics-"), os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _directory
    # Pool children inherit atexit handlers: only the process that made the directory removes it.
    atexit.register(lambda: os.getpid() == _owner and shutil.rmtree(_directory, ignore_errors=True))

from services.worker.celery_app import make_celery

app = make_celery()
