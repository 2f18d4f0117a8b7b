"""The Formance contract package: driver configs, the pipeline state machine, opaque tokens."""

import pytest
from marshmallow import ValidationError

from services.worker.delivery import backoff_seconds
from shared.schemas.pipelines import (
    TransitionNotAllowed,
    config_view,
    decode_token,
    encode_token,
    initial_state,
    load_connector,
    sendable_headers,
    transition,
)


def test_driver_configs_get_their_defaults_and_durations_in_seconds():
    http = load_connector(
        {
            "driver": "http",
            "config": {
                "url": "http://hooks.local:8080/in",
                "batching": {"maxItems": 10, "flushInterval": "250ms"},
            },
        }
    )
    assert http["config"]["batching"] == {"maxItems": 10, "flushInterval": 0.25}
    assert http["config"]["headers"] == {}
    s3 = load_connector({"driver": "s3", "config": {"bucket": "my-bucket"}})
    assert s3["config"]["prefix"] == "" and s3["config"]["batching"]["maxItems"] is None
    assert load_connector({"driver": "noop", "config": {"batching": {"flushInterval": 2}}})["config"] == {
        "batching": {"maxItems": None, "flushInterval": 2.0}
    }


@pytest.mark.parametrize(
    "config",
    [
        {"url": "ftp://x.io/"},
        {"url": "http://x.io", "headers": {"A": 1}},
        {"url": "http://x.io", "batching": {"flushInterval": "-1s"}},
        {"url": "http://user:secret@x.io/"},
        {"url": "http://x.io:99999/"},
        {"url": "http://x.io", "headers": {"Host": "internal.example"}},
        {"url": "http://x.io", "headers": {"content-length": "0"}},
        {"url": "http://x.io", "headers": {"Transfer-Encoding": "chunked"}},
        {"url": "http://x.io", "headers": {"Connection": "keep-alive"}},
        {"url": "http://x.io", "headers": {"Proxy-Authorization": "Basic x"}},
        {"url": "http://x.io", "headers": {"Upgrade": "websocket"}},
        {"url": "http://x.io", "headers": {"X-A": "1\r\nHost: evil"}},
        {"url": "http://x.io", "headers": {"Bad Name": "1"}},
        {"url": "http://x.io", "headers": {"X-Token": "<redacted>"}},
    ],
)
def test_bad_http_configs_are_refused(config):
    with pytest.raises(ValidationError):
        load_connector({"driver": "http", "config": config})


def test_at_send_time_forbidden_headers_and_sluices_own_are_dropped_in_any_case():
    stored = {"HOST": "x", "Connection": "close", "content-type": "text/plain", "X-Token": "t"}
    assert sendable_headers(stored) == {"X-Token": "t"}


@pytest.mark.parametrize(
    "config",
    [
        {"bucket": "b-1", "accessKeyId": "AKIAEXAMPLE12345"},  # half a key pair
        {"bucket": "b-1", "secretAccessKey": "s"},
        {"bucket": "b-1", "accessKeyId": "AKIAEXAMPLE12345", "secretAccessKey": "s", "roleArn": "x"},
        {"bucket": "b-1", "roleArn": "arn:aws:iam::123456789012:role/w", "externalId": "mine"},
        {"bucket": "b-1", "roleArn": "arn:aws:s3:::b-1"},
        {"bucket": "10.0.0.1"},
    ],
)
def test_bad_s3_configs_are_refused(config):
    with pytest.raises(ValidationError):
        load_connector({"driver": "s3", "config": config})


def test_reads_show_connector_secrets_redacted_and_the_roles_external_id():
    http = load_connector({"driver": "http", "config": {"url": "https://x.io", "headers": {"X-Token": "t"}}})
    assert config_view("http", http["config"], 7)["headers"] == {"X-Token": "<redacted>"}
    keys = {"bucket": "b-1", "accessKeyId": "AKIAEXAMPLE12345", "secretAccessKey": "s3cr3t"}
    shown = config_view("s3", load_connector({"driver": "s3", "config": keys})["config"], 7)
    assert shown["accessKeyId"] == "AKIAEXAMPLE12345" and shown["secretAccessKey"] == "<redacted>"
    role = {"bucket": "b-1", "roleArn": "arn:aws:iam::123456789012:role/writer"}
    shown = config_view("s3", load_connector({"driver": "s3", "config": role})["config"], 7)
    assert shown["externalId"] == "sluice-app-7"


def test_pause_stop_keep_the_state_they_left_and_resume_start_return_to_it():
    ready = {"label": "READY"}
    paused = transition(ready, "pause")
    assert paused == {"label": "PAUSE", "previousState": ready}
    stopped = transition(paused, "stop")
    assert transition(stopped, "start") == paused
    assert transition(transition(stopped, "start"), "resume") == ready
    assert transition(stopped, "reset") == initial_state() == {"label": "INIT"}


@pytest.mark.parametrize(
    "label, action",
    [
        ("READY", "resume"),
        ("READY", "start"),
        ("PAUSE", "pause"),
        ("STOP", "stop"),
        ("STOP", "pause"),
        ("STOP", "resume"),
        ("INIT", "start"),
    ],
)
def test_transitions_the_state_does_not_allow_are_refused(label, action):
    with pytest.raises(TransitionNotAllowed):
        transition({"label": label, "previousState": {"label": "READY"}}, action)


def test_tokens_round_trip_and_foreign_ones_are_refused():
    assert decode_token(encode_token({"d": "n", "k": 5})) == {"d": "n", "k": 5}
    for bad in ("%%%", "bm9wZQ", encode_token([1])[:-1]):
        with pytest.raises(ValueError):
            decode_token(bad)


def test_backoff_grows_and_is_capped():
    assert 0.4 <= backoff_seconds(0, 300) <= 0.6
    assert 3.2 <= backoff_seconds(3, 300) <= 4.8
    assert backoff_seconds(50, 300) == 300
