"""What every driver shares: its batching options."""


class DeliveryFailed(Exception):
    """The destination did not take the batch; the runner retries it. The message is the tenant's
    `lastError`: it says what the tenant can act on, never details of the service's network."""


class Driver:
    def __init__(self, config: dict, settings, pipeline_id: str, app_id: int):
        batching = config.get("batching") or {}
        self.max_items: int | None = batching.get("maxItems")
        # Hold a short batch back until its oldest event is this old, to send fuller batches.
        self.flush_interval: float = float(batching.get("flushInterval") or 0.0)
        self.pipeline_id = pipeline_id
        self.app_id = app_id

    def send(self, docs: list[str], first: tuple[str, int], deadline: float) -> None:
        """Deliver the batch whose first event sits at `first` (xid, id) before `deadline` (a
        time.monotonic() value): nothing may reach the destination after it. Raise DeliveryFailed."""
        raise NotImplementedError
