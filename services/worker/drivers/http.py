"""http: POST each batch as a JSON array to the connector's URL; any non-2xx answer is a failure."""

import urllib3

from services.worker.drivers.base import DeliveryFailed, Driver

# One pool per process: connections to a destination are reused across batches and pipelines.
_POOL = urllib3.PoolManager(num_pools=32, maxsize=4, retries=False)


class HttpDriver(Driver):
    def __init__(self, config, settings, pipeline_id):
        super().__init__(config, settings, pipeline_id)
        self.url = config["url"]
        self.headers = {
            **config.get("headers", {}),
            "Content-Type": "application/json",
            "X-Sluice-Pipeline": pipeline_id,
        }
        self.timeout = urllib3.Timeout(total=settings.pipeline_http_timeout_seconds)

    def send(self, docs, first):
        body = ("[" + ",".join(docs) + "]").encode()
        try:
            resp = _POOL.request("POST", self.url, body=body, headers=self.headers, timeout=self.timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryFailed(f"POST {self.url}: {exc}") from None
        if not 200 <= resp.status < 300:
            raise DeliveryFailed(f"POST {self.url}: HTTP {resp.status} {resp.data[:200]!r}")
