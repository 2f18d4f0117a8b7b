"""The key snapshot file: what lets a process that starts during a Postgres outage know keys."""

import os
import stat

import psycopg2
import pytest

from services.ingest.keys import KeyCache, KeyLookupUnavailable
from services.tenancy import hash_key


class Postgres:
    """The one edge: a database that answers with these keys, or is down."""

    def __init__(self, keys=None):
        self.keys = keys

    def connection(self):
        if self.keys is None:
            raise psycopg2.OperationalError("connection refused")
        return _Conn(self.keys)


class _Conn:
    def __init__(self, keys):
        self.keys = keys

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cursor(self):
        rows = [(hash_key(k), app) for k, app in self.keys.items()]
        return _Cursor(rows)


class _Cursor(list):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=()):
        if params:  # the on-miss lookup of one key hash
            self[:] = [(app,) for digest, app in list(self) if digest == params[0]]

    def fetchone(self):
        return self[0] if self else None


def test_a_cache_started_while_postgres_is_down_reads_the_snapshot_file(tmp_path):
    path = str(tmp_path / "keys.json")
    KeyCache(Postgres({"sk_a": 7}), ttl=30, snapshot_path=path).app_for("sk_a")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    restarted = KeyCache(Postgres(None), ttl=30, snapshot_path=path)
    assert restarted.app_for("sk_a") == 7


def test_an_unreadable_snapshot_is_ignored(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    cache = KeyCache(Postgres(None), ttl=30, snapshot_path=str(path))
    with pytest.raises(KeyLookupUnavailable):  # "cannot tell yet", not a crash
        cache.app_for("sk_a")
