"""The report and export wire forms, without network."""

from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from shared.schemas.exports import export_body, valid_ids
from shared.schemas.reports import job_body, load_report_request, parse_source

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
ACME_WEB = {"customer": "ACME", "product": "WEB"}


@pytest.mark.parametrize(
    "given, loaded",
    [
        (1571029200000, 1571029200000),
        ("1571029200000", 1571029200000),
        (" 1571029200000 ", 1571029200000),
        (1571029200000.0, 1571029200000),
    ],
)
def test_epoch_millis_come_as_numbers_or_numeric_strings(given, loaded):
    assert load_report_request({"filter": {**ACME_WEB, "start": given}})["start"] == loaded


@pytest.mark.parametrize("given", ["", "1e12", "12.5", 12.5, -1, True, [1], 2**63, str(2**63), "²"])
def test_other_times_are_refused(given):
    with pytest.raises(ValidationError) as refused:
        load_report_request({"filter": {**ACME_WEB, "start": given}})
    assert list(refused.value.messages["filter"]) == ["start"]


def test_source_names_a_job_only_as_JOB_uuid():
    assert parse_source("JOB-3fa85f64-5717-4562-b3fd-2c963f66afa6") == "3fa85f64-5717-4562-b3fd-2c963f66afa6"
    assert parse_source("3fa85f64-5717-4562-b3fd-2c963f66afa6") is None
    assert parse_source("JOB-../../etc") is None


def test_a_job_body_maps_our_states_to_barchart_words():
    body = job_body("abc", "queued", {"customer": "A", "product": None, "start": 5, "end": None}, NOW, 0)
    assert body == {
        "job": "abc",
        "source": "JOB-abc",
        "status": "RUNNING",
        "filter": {"customer": "A", "start": 5},
        "timing": {"day": "2024-05-06", "start": 1714979289000},
        "progress": {"rows": 0},
    }
    assert job_body("abc", "timeout", {}, NOW, 9)["status"] == "TIMEOUT"


def test_an_export_lists_files_only_while_it_is_a_success():
    files = [("https://s3/x-1.jsonl", 10)]
    later = NOW + timedelta(days=7)
    success = export_body("id", "done", "Event", later, files, 3, NOW)
    assert success["Status"] == "Success" and success["ExpiresUtc"] == "2024-05-13T07:08:09Z"
    assert success["Files"] == [{"Url": "https://s3/x-1.jsonl", "SizeInBytes": 10}]
    past_expiry = export_body("id", "done", "Event", later, files, 3, later)
    assert past_expiry["Status"] == "Expired" and past_expiry["Files"] == []
    assert export_body("id", "running", "Event", None, [], 3, NOW)["Status"] == "Processing"


def test_ids_that_are_not_uuids_match_nothing():
    assert valid_ids(["nope", "3FA85F64-5717-4562-B3FD-2C963F66AFA6"]) == [
        "3fa85f64-5717-4562-b3fd-2c963f66afa6"
    ]
