"""Barchart reports contract (reference 000): the report request and the Job answer."""

import uuid
from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.enums import ReportStatus

# Our job states (render_jobs.status) in the words of the Barchart document.
REPORT_STATUS = {
    "queued": ReportStatus.RUNNING,
    "running": ReportStatus.RUNNING,
    "done": ReportStatus.COMPLETE,
    "timeout": ReportStatus.TIMEOUT,
    "failed": ReportStatus.FAILED,
    "expired": ReportStatus.FAILED,  # reports do not expire today; never show a link-less COMPLETE
}

SOURCE_PREFIX = "JOB-"

# The report file's columns: an EventFull per row; context is one quoted column holding its JSON array.
REPORT_COLUMNS = ("customer", "product", "type", "timestamp", "context", "batch", "sequence")


class EpochMillis(fields.Field):
    """Epoch milliseconds as a JSON number or a numeric string ("1571029200000")."""

    default_error_messages = {"invalid": "Not epoch milliseconds (a whole number or a numeric string)."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or value < 0:
            raise self.make_error("invalid")
        return value


class FilterSchema(Schema):
    """Every part is optional: an absent part does not narrow the report. end is exclusive."""

    customer = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=256))
    product = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=256))
    start = EpochMillis(load_default=None, allow_none=True)
    end = EpochMillis(load_default=None, allow_none=True)

    @validates_schema
    def start_before_end(self, data, **kwargs):
        if data["start"] is not None and data["end"] is not None and data["start"] > data["end"]:
            raise ValidationError("start must not be after end.", "end")


class ReportRequestSchema(Schema):
    filter = fields.Nested(FilterSchema, load_default=lambda: FilterSchema().load({}))


report_request_schema = ReportRequestSchema()


def load_report_request(body) -> dict:
    """The normalised filter of a POST /reports body; raises ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError({"body": ['Expected a JSON object with an optional "filter".']})
    return report_request_schema.load(body)["filter"]


def parse_source(source: str) -> str | None:
    """The job id in "JOB-<uuid>", or None when it is not of that form."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    try:
        return str(uuid.UUID(source[len(SOURCE_PREFIX) :]))
    except ValueError:
        return None


def job_body(job_id: str, status: str, report_filter: dict, created_at: datetime, rows_written: int) -> dict:
    """The Job object. `progress.rows` (ours, not the document's) counts rows written so far."""
    created = created_at.astimezone(UTC)
    return {
        "job": job_id,
        "source": SOURCE_PREFIX + job_id,
        "status": REPORT_STATUS[status].value,
        "filter": {k: v for k, v in report_filter.items() if v is not None},
        "timing": {"day": created.strftime("%Y-%m-%d"), "start": int(created.timestamp() * 1000)},
        "progress": {"rows": rows_written},
    }
