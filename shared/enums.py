"""Enumerations that more than one service speaks."""

from enum import Enum


class EventKind(str, Enum):
    """Which producer contract an envelope's events follow."""

    BARCHART = "barchart"  # POST /events
    MOESIF = "moesif"  # POST /moesifapi/events, /v1/events


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
