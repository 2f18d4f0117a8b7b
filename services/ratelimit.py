"""Fixed-window rate limits counted in Redis, shared by every control API process.

A limit is "at most N hits per window for one subject" (an email, a client address). Over it the
caller gets 429 with Retry-After set to the seconds left in the window.
"""
import hashlib
import logging

import redis
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import TooManyRequests

from shared.errors import barchart_error, formance_error, simple_error

log = logging.getLogger(__name__)
PREFIX = "sluice:rl:"
# Blueprints whose document has an error shape of its own; the rest use simple_error.
ERROR_SHAPES = {"reports": barchart_error, "connectors": formance_error, "pipelines": formance_error}


class RateLimited(TooManyRequests):
    def __init__(self, retry_after: int):
        super().__init__("Too many attempts; try again later.")
        self.retry_after = max(1, retry_after)


class Limiter:
    def __init__(self, redis_url: str):
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)

    def _key(self, name: str, subject: str) -> str:
        # Subjects (emails, addresses) are hashed so Redis holds no personal data in clear.
        return PREFIX + name + ":" + hashlib.sha256(subject.encode()).hexdigest()[:32]

    def hit(self, name: str, subject: str, limit: int, window: int) -> None:
        """Count one hit; raise RateLimited when this one is over the limit."""
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
            raise RateLimited(ttl if ttl > 0 else window)

    def check(self, name: str, subject: str, limit: int) -> None:
        """Raise RateLimited when the subject is already over the limit, without counting."""
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
            raise RateLimited(ttl if ttl > 0 else 1)


def client_address() -> str:
    # Behind a proxy, wrap the app in werkzeug's ProxyFix so this is the real client.
    return request.remote_addr or "unknown"


def record_auth_failure() -> None:
    """Count a wrong credential from this client; 429 once it has guessed too often."""
    settings, limiter = current_app.config["SETTINGS"], current_app.config.get("LIMITER")
    if limiter is not None:
        limiter.hit("authfail", client_address(), settings.auth_failure_limit,
                    settings.rate_limit_window_seconds)


def refuse_blocked_client() -> None:
    """429 before looking a credential up when this client is over the failure limit."""
    settings, limiter = current_app.config["SETTINGS"], current_app.config.get("LIMITER")
    if limiter is not None:
        limiter.check("authfail", client_address(), settings.auth_failure_limit)


def install(app: Flask) -> None:
    app.config["LIMITER"] = Limiter(app.config["SETTINGS"].redis_url)

    @app.errorhandler(RateLimited)
    def rate_limited(exc: RateLimited):
        shape = ERROR_SHAPES.get(request.blueprint, simple_error)
        response = jsonify(shape("TOO_MANY_REQUESTS", exc.description))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, 429
