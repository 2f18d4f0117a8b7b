"""Mews connector exports contract (reference 002): exports/add, exports/getAll and the Export."""

import uuid
from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, fields, validate

from shared.enums import ExportStatus
from shared.schemas import storage_fields

# The entities we export, and the table each one comes from.
ENTITY_TYPES = ("Event", "ApiCall")
MAX_EXPORT_IDS = 1000

EXPORT_STATUS = {
    "queued": ExportStatus.PENDING,
    "running": ExportStatus.PROCESSING,
    "done": ExportStatus.SUCCESS,
    "failed": ExportStatus.FAILED,
    "timeout": ExportStatus.FAILED,
    "expired": ExportStatus.EXPIRED,
}


class _Request(Schema):
    class Meta:
        unknown = EXCLUDE  # Mews clients send more (LanguageCode, EnterpriseIds...); they change nothing here

    ClientToken = storage_fields.Text(required=True, validate=validate.Length(min=1, max=1024))
    AccessToken = storage_fields.Text(
        required=True,
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "the credential: one of the app's API keys"},
    )
    Client = storage_fields.Text(required=True, validate=validate.Length(min=1, max=1024))


class ExportAddSchema(_Request):
    EntityType = fields.String(
        required=True,
        validate=validate.OneOf(
            ENTITY_TYPES, error="Unknown EntityType; one of: " + ", ".join(ENTITY_TYPES) + "."
        ),
    )


class ExportGetAllSchema(_Request):
    ExportIds = fields.List(
        fields.String(),
        required=True,
        validate=validate.Length(max=MAX_EXPORT_IDS, error=f"At most {MAX_EXPORT_IDS} ExportIds."),
    )


export_add_schema = ExportAddSchema()
export_get_all_schema = ExportGetAllSchema()


def valid_ids(ids: list[str]) -> list[str]:
    """The ids that are uuids at all; anything else cannot name an export, so it matches none."""
    out = []
    for value in ids:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            pass
    return out


def utc_text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def export_body(
    job_id: str,
    status: str,
    entity_type: str,
    expires_at: datetime | None,
    files: list[tuple[str, int]],
    rows_written: int,
    now: datetime,
) -> dict:
    """The Export object. A Success past its ExpiresUtc reads Expired even before the sweep ran,
    and only a Success lists files (Url, SizeInBytes). `Progress.Rows` (ours, not the document's)
    counts entities written so far."""
    wire = EXPORT_STATUS[status]
    if wire is ExportStatus.SUCCESS and expires_at is not None and expires_at <= now:
        wire = ExportStatus.EXPIRED
    return {
        "Id": job_id,
        "Status": wire.value,
        "EntityType": entity_type,
        "Files": [{"Url": url, "SizeInBytes": size} for url, size in files]
        if wire is ExportStatus.SUCCESS
        else [],
        "ExpiresUtc": utc_text(expires_at),
        "Progress": {"Rows": rows_written},
    }


# --- answers, for the OpenAPI document ------------------------------------------------------------


class ExportFileSchema(Schema):
    Url = fields.Url(required=True, metadata={"description": "presigned link to a JSON Lines file"})
    SizeInBytes = fields.Integer(required=True)


class ExportProgressSchema(Schema):
    Rows = fields.Integer(required=True, metadata={"description": "entities written so far (ours)"})


class ExportSchema(Schema):
    """What export_body() answers."""

    Id = fields.UUID(required=True)
    Status = fields.Enum(ExportStatus, by_value=True, required=True)
    EntityType = fields.String(required=True, validate=validate.OneOf(ENTITY_TYPES))
    Files = fields.List(fields.Nested(ExportFileSchema), required=True)
    ExpiresUtc = fields.DateTime(required=True, allow_none=True)
    Progress = fields.Nested(ExportProgressSchema, required=True)


class ExportAddedSchema(Schema):
    Export = fields.Nested(ExportSchema, required=True)


class ExportsSchema(Schema):
    Exports = fields.List(fields.Nested(ExportSchema), required=True)
