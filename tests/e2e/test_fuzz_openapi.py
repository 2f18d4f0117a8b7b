"""Both running APIs, fuzzed from their own /openapi.json with schemathesis: no request gets a 5xx,
and every answer is one the document promises (status code, content type, body, headers).

The schemathesis CLI runs against real gunicorn processes; tests/e2e/fuzz_hooks.py puts a real
app's credentials on every case. The run is seeded and derandomized, so CI sees the same cases every
time; SLUICE_FUZZ_EXAMPLES sets the examples per operation (default 20).
"""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import person
from tests.helpers import logged_in

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "20"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
# The fuzzer is one client at one address: the limits that keep tenants from locking each other
# out would answer it 429 for everything after its first hundred wrong guesses.
GENEROUS_LIMITS = {
    "SLUICE_AUTH_FAILURE_LIMIT": "1000000",
    "SLUICE_LOGIN_LIMIT_PER_EMAIL": "1000000",
    "SLUICE_LOGIN_LIMIT_PER_ADDRESS": "1000000",
}


def fuzz(service, db, tmp_path) -> subprocess.CompletedProcess:
    pat = person(db)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
        "SLUICE_FUZZ_APP_ID": str(pat.app_id),
        "SLUICE_FUZZ_KEY": pat.api_key,
        "SLUICE_FUZZ_SESSION": logged_in(db, pat.email),
        "SLUICE_FUZZ_LOGOUT_SESSION": logged_in(db, pat.email),
    }
    command = [
        str(BIN / "schemathesis"),
        "--no-color",
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20240501",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("api", ["ingest", "control"])
def test_fuzzing_the_api_finds_no_server_error_and_no_answer_off_its_document(
    services, outbox, db, tmp_path, api
):
    if api == "ingest":
        service = services.ingest()
    else:
        service = services.control(SLUICE_SMTP_PORT=str(outbox.port), **GENEROUS_LIMITS)
    run = fuzz(service, db, tmp_path)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    # The cases got past authentication: they exercised the routes, not only the 401 path.
    answers = answered(service)
    total = sum(answers.values())
    assert total > 500, answers
    assert answers[401] < total * 0.05 and sum(n for s, n in answers.items() if s < 300) > total * 0.1, (
        answers
    )


def answered(service) -> Counter:
    """How many requests the service answered, by status (its Prometheus counter)."""
    counts: Counter = Counter()
    for family in text_string_to_metric_families(requests.get(service.url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "sluice_http_requests_total":
                counts[int(sample.labels["status"])] += int(sample.value)
    return counts
