"""gunicorn settings shared by both APIs.

gthread workers: a sync worker would block on every SQS call. Prometheus samples from all worker
processes are added up through a multiprocess directory.
"""

import os
import tempfile

worker_class = "gthread"
workers = int(os.environ.get("SLUICE_WEB_WORKERS", "2"))
threads = int(os.environ.get("SLUICE_WEB_THREADS", "8"))
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("SLUICE_ACCESS_LOG") or None
# Forwarded headers are believed only as SLUICE_TRUSTED_PROXY_HOPS says (werkzeug's ProxyFix in the
# app, which the access log then follows); gunicorn's own trust of X-Forwarded-Proto from
# 127.0.0.1 would let any local client claim https.
forwarded_allow_ips = ""

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sluice-prom-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
