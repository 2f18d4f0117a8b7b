"""The Formance contract package: driver configs, the pipeline state machine, opaque tokens."""

import pytest
from marshmallow import ValidationError

from services.worker.delivery import backoff_seconds
from shared.schemas.pipelines import (
    TransitionNotAllowed,
    decode_token,
    encode_token,
    initial_state,
    load_connector,
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
    ],
)
def test_bad_http_configs_are_refused(config):
    with pytest.raises(ValidationError):
        load_connector({"driver": "http", "config": config})


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
