"""Fixed-window rate limits counted in Redis, shared by every control API process.

A limit is "at most N hits per window for one subject" (an email, a client address). Over it the
caller gets 429 with Retry-After set to the seconds left in the window.
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

    def check(self, name: str, subject: str, limit: int) -> None:
        """Raise a 429 ApiError when the subject is already over the limit, without counting."""
        key = self._key(name, subject)
        try:
            pipe = self._redis.pipeline()
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = pipe.execute()
        except redis.RedisError as exc:
            log.warning("rate limit %s not checked: %s", name, exc)
            return
        if count is not None and int(count) >= limit:
            raise rate_limited(ttl if ttl > 0 else 1)


def client_address() -> str:
    # Behind a proxy, wrap the app in werkzeug's ProxyFix so this is the real client.
    return request.remote_addr or "unknown"


def record_auth_failure() -> None:
    """Count a wrong credential from this client; 429 once it has guessed too often."""
    limiter = current_app.config.get("LIMITER")
    if limiter is not None:
        limiter.hit(
            "authfail", client_address(), settings().auth_failure_limit, settings().rate_limit_window_seconds
        )


def refuse_blocked_client() -> None:
    """429 before looking a credential up when this client is over the failure limit."""
    limiter = current_app.config.get("LIMITER")
    if limiter is not None:
        limiter.check("authfail", client_address(), settings().auth_failure_limit)


def install(app: Flask) -> None:
    app.config["LIMITER"] = Limiter(app.config["SETTINGS"].redis_url)
