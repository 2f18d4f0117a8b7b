"""Barchart reports contract (reference 000): the report request and the Job answer."""

import uuid
from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from shared.enums import ReportStatus
from shared.schemas import storage_fields
from shared.storage_limits import BIGINT_MAX

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
    """Epoch milliseconds as a JSON number or a numeric string ("1571029200000"), within bigint."""

    default_error_messages = {
        "invalid": "Not epoch milliseconds (a whole number or a numeric string).",
        "range": f"Must be between 0 and {BIGINT_MAX}.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int):
            raise self.make_error("invalid")
        if not 0 <= value <= BIGINT_MAX:
            raise self.make_error("range")
        return value


_EPOCH_MILLIS_DOC = {
    "description": "epoch milliseconds, a number or a numeric string",
    "oneOf": [
        {"type": "integer", "format": "int64", "minimum": 0, "maximum": BIGINT_MAX},
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
    ],
}


class FilterSchema(Schema):
    """customer and product are required (Barchart's OpenAPI 1.3.0); start and end are optional.
    start is inclusive, end exclusive."""

    customer = storage_fields.Text(required=True, validate=validate.Length(min=1, max=256))
    product = storage_fields.Text(required=True, validate=validate.Length(min=1, max=256))
    start = EpochMillis(load_default=None, allow_none=True, metadata=_EPOCH_MILLIS_DOC)
    end = EpochMillis(load_default=None, allow_none=True, metadata=_EPOCH_MILLIS_DOC)

    @validates_schema
    def start_before_end(self, data, **kwargs):
        if data["start"] is not None and data["end"] is not None and data["start"] > data["end"]:
            raise ValidationError("start must not be after end.", "end")


class ReportRequestSchema(Schema):
    filter = fields.Nested(FilterSchema, required=True)

    @pre_load
    def absent_filter_names_its_parts(self, data, **kwargs):
        # Without a filter the answer names what is missing in it: filter.customer.
        return {"filter": {}, **data} if isinstance(data, dict) else data


report_request_schema = ReportRequestSchema()


def load_report_request(body) -> dict:
    """The normalised filter of a POST /reports body; raises ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError({"body": ['Expected a JSON object {"filter": {customer, product...}}.']})
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


# --- answers, for the OpenAPI document ------------------------------------------------------------


class JobFilterSchema(Schema):
    """The filter as the job keeps it: the parts that were given, start and end as numbers."""

    customer = fields.String()
    product = fields.String()
    start = fields.Integer(metadata={"format": "int64"})
    end = fields.Integer(metadata={"format": "int64"})


class JobTimingSchema(Schema):
    day = fields.String(required=True, metadata={"description": "UTC day the job was created, YYYY-MM-DD"})
    start = fields.Integer(required=True, metadata={"description": "epoch ms the job was created"})


class JobProgressSchema(Schema):
    rows = fields.Integer(required=True, metadata={"description": "rows written so far (ours)"})


class JobSchema(Schema):
    """What job_body() answers."""

    job = fields.UUID(required=True)
    source = fields.String(required=True, metadata={"description": "JOB-<uuid>: names the report"})
    status = fields.Enum(ReportStatus, required=True)
    filter = fields.Nested(JobFilterSchema, required=True)
    timing = fields.Nested(JobTimingSchema, required=True)
    progress = fields.Nested(JobProgressSchema, required=True)


class ReportLinkSchema(Schema):
    link = fields.Url(required=True, metadata={"description": "presigned link to the CSV file"})
