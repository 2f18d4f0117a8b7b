"""Connector drivers: where a pipeline's batches go.

A driver gets a batch as JSON texts (one per event, in delivery order) and either delivers all of
it or raises DeliveryFailed; the runner then retries the same batch with backoff. Delivery is at
least once, so a destination may see a batch again after a failure or a takeover.
"""

from services.worker.drivers import http, s3, simple
from services.worker.drivers.base import DeliveryFailed, Driver

# Imported with the package, not at a pipeline's first delivery: s3 brings boto3 (50 ms).
KINDS = {"http": http.HttpDriver, "s3": s3.S3Driver, "stdout": simple.StdoutDriver, "noop": simple.NoopDriver}


def build(driver: str, config: dict, settings, pipeline_id: str, app_id: int) -> Driver:
    """A driver for a connector's (already validated) config."""
    return KINDS[driver](config, settings, pipeline_id, app_id)


__all__ = ["DeliveryFailed", "Driver", "build"]
