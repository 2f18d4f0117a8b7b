"""What Moesif's middlewares fetch besides posting events: the app config and governance rules.

moesifwsgi, moesifdjango and moesifasgi (through the `moesifapi` package) and moesif-nodejs ask for
GET /v1/config and GET /v1/rules at start-up and then every minute. Sluice stores every call, so the
config samples everything and there are no rules. The fields are those the middlewares read:
`sample_rate`, `user_sample_rate` and `company_sample_rate` (per user and company id), `regex_config`
(sample rates by request pattern), `user_rules` and `company_rules` (governance cohorts).

Each middleware refetches the config when the `X-Moesif-Config-ETag` of an events answer differs
from the one the config came with (moesif-nodejs, when it is missing, on nearly every request it
handles); moesifdjango refetches the rules when `X-Moesif-Rules-Tag` changes. So the config, the
rules and every accepted batch carry both tags, which change only when the documents do.
"""

import hashlib
import json

CONFIG = {
    "sample_rate": 100,
    "user_sample_rate": {},
    "company_sample_rate": {},
    "regex_config": [],
    "user_rules": {},
    "company_rules": {},
}
RULES: list = []


def _document(value) -> tuple[str, str]:
    """The JSON text and its tag: a hash of the text, the same in every process and release."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode()).hexdigest()[:32]


CONFIG_JSON, CONFIG_ETAG = _document(CONFIG)
RULES_JSON, RULES_TAG = _document(RULES)
TAG_HEADERS = {"X-Moesif-Config-ETag": CONFIG_ETAG, "X-Moesif-Rules-Tag": RULES_TAG}
