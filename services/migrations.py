"""Applying the database schema: the ordered SQL migrations in shared/migrations, each once.

`sluice db upgrade` runs this as a release step; no service migrates at boot.
"""

from importlib import resources

import psycopg2

MIGRATIONS = resources.files("shared") / "migrations"
# Serialises concurrent `sluice db upgrade` runs (two deploys at once) on one database.
_LOCK_KEY = 0x511CE


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) for every migration, in the order of their numeric prefixes."""
    files = sorted((p for p in MIGRATIONS.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text()) for p in files]


def upgrade(database_url: str) -> list[str]:
    """Apply the migrations the database has not seen; return their names."""
    applied: list[str] = []
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                               name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
            cur.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            for name, sql in migration_files():
                if name not in done:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                    applied.append(name)
    finally:
        conn.close()
    return applied
