"""API key lookups for the hot path, cached so that ingest does not depend on Postgres."""
import threading
import time

import psycopg2

from services.tenancy import app_for_key, hash_key


class KeyLookupUnavailable(Exception):
    """Postgres cannot be asked and the key was never seen: we cannot tell yes or no."""


class KeyCache:
    """key hash -> app id, trusted for `ttl` seconds and used past that while Postgres is down.

    Only keys that resolved are cached: a key created a moment ago works at once, and a revoked
    key stops working within `ttl` seconds.
    """

    def __init__(self, db, ttl: float):
        self._db = db
        self._ttl = ttl
        self._entries: dict[bytes, tuple[int | None, float]] = {}
        self._lock = threading.Lock()

    def app_for(self, key: str) -> int | None:
        digest = hash_key(key)
        cached = self._entries.get(digest)
        if cached and time.monotonic() - cached[1] < self._ttl:
            return cached[0]
        try:
            with self._db.connection() as conn:
                app_id = app_for_key(conn, key)
        except psycopg2.Error:
            if cached:  # Postgres is away: a key we knew keeps working until it returns
                return cached[0]
            raise KeyLookupUnavailable() from None
        with self._lock:
            if app_id is None:
                self._entries.pop(digest, None)
            else:
                self._entries[digest] = (app_id, time.monotonic())
        return app_id
