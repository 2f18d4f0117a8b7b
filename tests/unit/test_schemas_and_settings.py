import pytest
from marshmallow import ValidationError

from services.settings import IngestSettings, SettingsError, WorkerSettings
from shared.errors import flatten_marshmallow
from shared.schemas.events import validate_events

GOOD = {"customer": "A", "product": "B", "type": "C", "timestamp": 1568381886060, "context": ["x"]}


def test_valid_events_load_unchanged():
    assert validate_events([GOOD, GOOD]) == [GOOD, GOOD]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({**GOOD, "timestamp": "1568381886060"}, "[1].timestamp"),
        ({**GOOD, "timestamp": 1.5}, "[1].timestamp"),
        ({k: v for k, v in GOOD.items() if k != "customer"}, "[1].customer"),
        ({**GOOD, "context": "x"}, "[1].context"),
        ({**GOOD, "extra": 1}, "[1].extra"),
    ],
)
def test_errors_name_the_index_and_the_field(bad, field):
    with pytest.raises(ValidationError) as info:
        validate_events([GOOD, bad])
    assert flatten_marshmallow(info.value.messages)[0][0] == field


def test_settings_fail_fast_naming_the_missing_variable():
    with pytest.raises(SettingsError, match="SLUICE_DATABASE_URL"):
        IngestSettings.from_env({})
    with pytest.raises(SettingsError, match="SLUICE_REDIS_URL"):
        WorkerSettings.from_env({"SLUICE_DATABASE_URL": "postgresql://x"})
    with pytest.raises(SettingsError, match="SLUICE_MAX_BODY_BYTES"):
        IngestSettings.from_env({"SLUICE_DATABASE_URL": "x", "SLUICE_MAX_BODY_BYTES": "lots"})


def test_settings_read_and_cast_environment_values():
    s = IngestSettings.from_env(
        {"SLUICE_DATABASE_URL": "x", "SLUICE_OPEN_INGEST_APP": "12", "SLUICE_MAX_BODY_BYTES": "2048"}
    )
    assert s.open_ingest_app == 12 and s.max_body_bytes == 2048 and s.events_queue == "sluice-events"


@pytest.mark.parametrize(
    "bad",
    [
        {**GOOD, "customer": ""},
        {**GOOD, "type": "t" * 257},
        {**GOOD, "timestamp": True},
        {**GOOD, "timestamp": -1},
        {**GOOD, "context": ["x", 1]},
        {**GOOD, "context": None},
        {**GOOD, "product": None},
        [GOOD],
    ],
)
def test_the_fast_path_lets_nothing_through_that_the_schema_refuses(bad):
    with pytest.raises(ValidationError):
        validate_events([GOOD, bad])
