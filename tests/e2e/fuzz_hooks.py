"""schemathesis hooks for tests/e2e/test_fuzz_openapi.py, loaded by its CLI (SCHEMATHESIS_HOOKS).

Every fuzzed request carries a real app's credentials, in each form the routes take, so most cases
get past authentication: HTTP Basic, the Moesif header, the Mews AccessToken in the body, and a
logged-in session cookie. The test hands them over in SLUICE_FUZZ_* environment variables.
"""

import base64
import os

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    app_id, key = os.environ["SLUICE_FUZZ_APP_ID"], os.environ["SLUICE_FUZZ_KEY"]
    basic = base64.b64encode(f"{app_id}:{key}".encode()).decode()
    case.headers = {**(case.headers or {}), "Authorization": f"Basic {basic}", "X-Moesif-Application-Id": key}
    # Logging out ends its own session, not the one every other case uses.
    session = os.environ[
        "SLUICE_FUZZ_LOGOUT_SESSION" if case.path == "/api/1/logout" else "SLUICE_FUZZ_SESSION"
    ]
    case.cookies = {**(case.cookies or {}), "session_key": session}
    if isinstance(case.body, dict) and "AccessToken" in case.body:
        case.body["AccessToken"] = key
