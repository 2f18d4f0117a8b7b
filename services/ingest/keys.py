"""API key lookups for the hot path, cached so that ingest does not depend on Postgres.

Each process holds a snapshot of every live key hash (key hash -> app id), reloaded from Postgres
once it is older than `ttl` seconds. A key missing from the snapshot (created since) is looked up
on its own and added. So every gunicorn process knows every key that was live at its last reload,
not only the keys it happened to see, and with Postgres stopped all of those keep posting.

Each reload also writes the snapshot to a file shared by the processes on this host, so a process
that starts while Postgres is down (gunicorn replaces a worker, the host restarts the service)
begins from it instead of knowing no key at all.

Revocation: a revoked key stops working within `ttl` seconds (plus one reload query) while
Postgres answers. During an outage the last snapshot is trusted, since it cannot be checked.
"""

import contextlib
import json
import logging
import os
import tempfile
import threading
import time

import psycopg2

from services.tenancy import app_for_key, hash_key, live_key_hashes

log = logging.getLogger("sluice.ingest.keys")

# After a failed reload, wait this long before asking Postgres again, so an outage costs one
# failed connection attempt per interval rather than one per request.
RETRY_AFTER_FAILURE_SECONDS = 5.0


class KeyLookupUnavailable(Exception):
    """Postgres cannot be asked and the key is not in the snapshot: we cannot tell yes or no."""


class KeyCache:
    def __init__(self, db, ttl: float, snapshot_path: str | None = None):
        self._db = db
        self._ttl = ttl
        self._snapshot_path = snapshot_path
        self._keys: dict[bytes, int] = {}
        self._loaded_at: float | None = None  # monotonic time of the last successful reload
        self._next_try = 0.0  # no reload attempt before this monotonic time
        self._reloading = threading.Lock()
        self._refresher_pid = None

    def start_refreshing(self) -> None:
        """Reload in the background every ttl/2, so that a process knows every live key before
        its first request and requests rarely wait on a reload. Call it in the serving process
        (gunicorn forks workers, and threads do not survive a fork)."""
        if self._refresher_pid == os.getpid():
            return
        self._refresher_pid = os.getpid()
        threading.Thread(target=self._refresh_forever, name="key-refresher", daemon=True).start()

    def _refresh_forever(self) -> None:
        while True:
            self._reload_if_stale(force=True)
            time.sleep(max(0.5, self._ttl / 2))

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

    def _fresh(self, force: bool) -> bool:
        age = None if self._loaded_at is None else time.monotonic() - self._loaded_at
        return age is not None and age < (self._ttl / 2 if force else self._ttl)

    def _reload_if_stale(self, force: bool = False) -> None:
        if self._fresh(force):
            return
        if time.monotonic() < self._next_try:
            return  # Postgres failed a moment ago: keep trusting the snapshot we have
        if not self._reloading.acquire(blocking=self._loaded_at is None):
            return  # another thread is reloading; the current snapshot serves meanwhile
        try:
            if self._fresh(force):
                return
            try:
                self._keys = self._load()
                self._loaded_at = time.monotonic()
            except psycopg2.Error:
                self._next_try = time.monotonic() + min(self._ttl, RETRY_AFTER_FAILURE_SECONDS)
                if self._loaded_at is None and not self._keys:
                    self._keys = self._read_snapshot()  # started during an outage
                return
            self._write_snapshot()
        finally:
            self._reloading.release()

    def _write_snapshot(self) -> None:
        """Replace the shared file atomically; its mtime says when Postgres last vouched for it."""
        if not self._snapshot_path:
            return
        tmp = None
        try:  # mkstemp creates the file 0600: only this user reads the hashes
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self._snapshot_path) or ".", prefix=".keys-")
            with os.fdopen(fd, "w") as out:
                json.dump({digest.hex(): app_id for digest, app_id in self._keys.items()}, out)
            os.replace(tmp, self._snapshot_path)
        except OSError as exc:  # the cache in memory still works; say why the file does not
            log.warning("cannot write key snapshot %s: %s", self._snapshot_path, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _read_snapshot(self) -> dict[bytes, int]:
        if not self._snapshot_path:
            return {}
        try:
            with open(self._snapshot_path) as src:
                keys = {bytes.fromhex(digest): int(app_id) for digest, app_id in json.load(src).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable key snapshot %s: %s", self._snapshot_path, exc)
            return {}
        log.warning("Postgres is unavailable: serving %d keys from %s", len(keys), self._snapshot_path)
        return keys

    def _load(self) -> dict[bytes, int]:
        with self._db.connection() as conn:
            return live_key_hashes(conn)
