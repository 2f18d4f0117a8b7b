"""Enumerations that more than one service speaks."""

from enum import Enum


class EventKind(str, Enum):
    """Which producer contract an envelope's events follow."""

    BARCHART = "barchart"  # POST /events
    MOESIF = "moesif"  # POST /moesifapi/events, /v1/events


class KeyScope(str, Enum):
    """What an API key may do. Producers ship ingest keys: a key inside a browser or an app leaks."""

    INGEST = "ingest"  # posts events (the ingest API), nothing else
    ADMIN = "admin"  # also reports, exports, connectors and pipelines (the control API)


class ReportStatus(str, Enum):
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    TIMEOUT = "TIMEOUT"
    FAILED = "FAILED"


class ExportStatus(str, Enum):
    PENDING = "Pending"
    PROCESSING = "Processing"
    SUCCESS = "Success"
    EXPIRED = "Expired"
    FAILED = "Failed"


class PipelineState(str, Enum):
    STOP = "STOP"
    PAUSE = "PAUSE"
    INIT = "INIT"
    READY = "READY"
