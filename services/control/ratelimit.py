"""Fixed-window rate limits counted in Redis, shared by every control API process.

A limit is "at most N hits per window for one subject" (an email, a client address). Over it the
caller gets 429 with Retry-After set to the seconds left in the window.

The client address is the socket's peer, or with SLUICE_TRUSTED_PROXY_HOPS the address the
trusted proxies forwarded (services.web.trust_proxies). No limit lets one client lock out another:
wrong credentials are counted per address but a right one always works, and logins are counted per
(email, address) below a per-email ceiling that one address alone cannot reach.
"""

import hashlib
import logging

import redis
from flask import Flask, current_app, request

from services.api_errors import ApiError
from services.web import settings

log = logging.getLogger(__name__)
PREFIX = "sluice:rl:"


def rate_limited(retry_after: int) -> ApiError:
    """429 with the seconds left in the window; each blueprint renders it in its own shape."""
    return ApiError(
        429,
        "TOO_MANY_REQUESTS",
        "Too many attempts; try again later.",
        {"Retry-After": str(max(1, retry_after))},
    )


class Limiter:
    def __init__(self, redis_url: str):
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)

    def _key(self, name: str, subject: str) -> str:
        # Subjects (emails, addresses) are hashed so Redis holds no personal data in clear.
        return PREFIX + name + ":" + hashlib.sha256(subject.encode()).hexdigest()[:32]

    def hit(self, name: str, subject: str, limit: int, window: int) -> None:
        """Count one hit; raise a 429 ApiError when this one is over the limit."""
        key = self._key(name, subject)
        try:
            pipe = self._redis.pipeline()
            pipe.set(key, 0, ex=window, nx=True)  # the window starts at the first hit
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = pipe.execute()
        except redis.RedisError as exc:
            # Fail open: the secrets behind these limits (256-bit keys, codes that lock after a
            # few wrong tries in Postgres) hold without them, and logins keep working.
            log.warning("rate limit %s not counted: %s", name, exc)
            return
        if count > limit:
            raise rate_limited(ttl if ttl > 0 else window)


def client_address() -> str:
    return request.remote_addr or "unknown"


def record_auth_failure() -> None:
    """Count a wrong credential from this client; 429 once it has guessed too often.

    Called only after the credential was looked up and found wrong: a right one is never refused.
    """
    limiter = current_app.config.get("LIMITER")
    if limiter is not None:
        limiter.hit(
            "authfail", client_address(), settings().auth_failure_limit, settings().rate_limit_window_seconds
        )


def count_login(email: str) -> None:
    """Count a login for `email` from this client; 429 past any of the three limits.

    The per-email ceiling counts only logins the per-address and per-(email, address) limits let
    through, so one address adds at most SLUICE_LOGIN_LIMIT_PER_EMAIL_AND_ADDRESS to it.
    """
    config, limiter = settings(), current_app.config["LIMITER"]
    window, address = config.rate_limit_window_seconds, client_address()
    limiter.hit("login-address", address, config.login_limit_per_address, window)
    limiter.hit("login-email-address", f"{email} {address}", config.login_limit_per_email_and_address, window)
    limiter.hit("login-email", email, config.login_limit_per_email, window)


def install(app: Flask) -> None:
    app.config["LIMITER"] = Limiter(app.config["SETTINGS"].redis_url)
