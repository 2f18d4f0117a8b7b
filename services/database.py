"""Postgres connections for threaded web and worker processes."""

import threading
from contextlib import contextmanager

import psycopg2
from psycopg2.pool import PoolError


class Database:
    """A small pool: at most `maxconn` connections, opened on demand and kept open for reuse.

    (psycopg2's own pools close every returned connection beyond `minconn`, and raise instead of
    waiting when all are busy; threads here should wait for a connection, and reuse it.)
    """

    def __init__(self, url: str, maxconn: int = 16, connect_timeout: int = 3, wait_seconds: float = 30):
        self.url = url
        self._connect_timeout = connect_timeout
        self._wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(maxconn)
        self._idle: list = []
        self._lock = threading.Lock()

    def _checkout(self):
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        return psycopg2.connect(self.url, connect_timeout=self._connect_timeout)

    @contextmanager
    def connection(self):
        """A connection inside a transaction: commit on success, roll back on error.

        A connection that broke (Postgres restarted) is closed rather than kept for reuse.
        """
        if not self._slots.acquire(timeout=self._wait_seconds):
            raise PoolError(f"no Postgres connection free after {self._wait_seconds}s")
        conn = None
        try:
            conn = self._checkout()
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if conn is not None:
                conn.close()
            raise
        finally:
            if conn is not None and not conn.closed:
                with self._lock:
                    self._idle.append(conn)
            self._slots.release()

    def ping(self) -> None:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
