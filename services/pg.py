"""Postgres connections for threaded web and worker processes."""
import threading
from contextlib import contextmanager

import psycopg2
from psycopg2.pool import ThreadedConnectionPool


class Database:
    """A lazily opened connection pool; nothing connects until the first query."""

    def __init__(self, url: str, maxconn: int = 16, connect_timeout: int = 3):
        self.url = url
        self._maxconn = maxconn
        self._connect_timeout = connect_timeout
        self._pool = None
        self._lock = threading.Lock()

    def _get_pool(self) -> ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadedConnectionPool(0, self._maxconn, self.url,
                                                    connect_timeout=self._connect_timeout)
            return self._pool

    @contextmanager
    def connection(self):
        """A connection inside a transaction: commit on success, roll back on error.

        A connection that broke (Postgres restarted) is discarded rather than returned to the pool.
        """
        pool = self._get_pool()
        conn = pool.getconn()
        broken = False
        try:
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True
            raise
        finally:
            pool.putconn(conn, close=broken or conn.closed != 0)

    def ping(self) -> None:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
