"""API key lookups for the hot path, cached so that ingest does not depend on Postgres.

Each process holds a snapshot of every live key hash (key hash -> app id), reloaded from Postgres
once it is older than `ttl` seconds. A key missing from the snapshot (created since) is looked up
on its own and added. So every gunicorn process knows every key that was live at its last reload,
not only the keys it happened to see, and with Postgres stopped all of those keep posting.

Revocation: a revoked key stops working within `ttl` seconds (plus one reload query) while
Postgres answers. During an outage the last snapshot is trusted, since it cannot be checked.
"""
import threading
import time

import psycopg2

from services.tenancy import app_for_key, hash_key, live_key_hashes

# After a failed reload, wait this long before asking Postgres again, so an outage costs one
# failed connection attempt per interval rather than one per request.
RETRY_AFTER_FAILURE_SECONDS = 5.0


class KeyLookupUnavailable(Exception):
    """Postgres cannot be asked and the key is not in the snapshot: we cannot tell yes or no."""


class KeyCache:
    def __init__(self, db, ttl: float):
        self._db = db
        self._ttl = ttl
        self._keys: dict[bytes, int] = {}
        self._loaded_at: float | None = None  # monotonic time of the last successful reload
        self._next_try = 0.0  # no reload attempt before this monotonic time
        self._reloading = threading.Lock()

    def app_for(self, key: str) -> int | None:
        """The app of a live key, None for an unknown or revoked one."""
        digest = hash_key(key)
        self._reload_if_stale()
        app_id = self._keys.get(digest)
        if app_id is not None:
            return app_id
        if time.monotonic() < self._next_try:
            raise KeyLookupUnavailable()  # Postgres failed a moment ago; do not wait on it again
        try:  # a key created since the last reload works at once
            with self._db.connection() as conn:
                app_id = app_for_key(conn, key)
        except psycopg2.Error:
            self._next_try = time.monotonic() + min(self._ttl, RETRY_AFTER_FAILURE_SECONDS)
            raise KeyLookupUnavailable() from None
        if app_id is not None:
            self._keys[digest] = app_id
        return app_id

    def _reload_if_stale(self) -> None:
        now = time.monotonic()
        if self._loaded_at is not None and now - self._loaded_at < self._ttl:
            return
        if now < self._next_try:
            return  # Postgres failed a moment ago: keep trusting the snapshot we have
        if not self._reloading.acquire(blocking=self._loaded_at is None):
            return  # another thread is reloading; the current snapshot serves meanwhile
        try:
            if self._loaded_at is not None and time.monotonic() - self._loaded_at < self._ttl:
                return
            try:
                self._keys = self._load()
                self._loaded_at = time.monotonic()
            except psycopg2.Error:
                self._next_try = time.monotonic() + min(self._ttl, RETRY_AFTER_FAILURE_SECONDS)
        finally:
            self._reloading.release()

    def _load(self) -> dict[bytes, int]:
        with self._db.connection() as conn:
            return live_key_hashes(conn)
