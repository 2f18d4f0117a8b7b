"""Organizations, users, apps and API keys: the one identity model every wire form maps onto."""
import hashlib
import secrets

KEY_PREFIX = "sk_"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    """A 256-bit random token; the caller shows it once and stores only its hash."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_org(conn, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO orgs (name) VALUES (%s) RETURNING id", (name,))
        return cur.fetchone()[0]


def org_id_by_name(conn, name: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM orgs WHERE name = %s", (name,))
        row = cur.fetchone()
        return row[0] if row else None


def create_app(conn, org_id: int, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO apps (org_id, name) VALUES (%s, %s) RETURNING id", (org_id, name))
        return cur.fetchone()[0]


def create_key(conn, app_id: int) -> tuple[int, str]:
    """Create an API key for an app; return (key id, the secret key)."""
    key = new_key()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO api_keys (app_id, prefix, key_hash) VALUES (%s, %s, %s) RETURNING id",
                    (app_id, key[:10], hash_key(key)))
        return cur.fetchone()[0], key


def create_user(conn, org_id: int, email: str, display_name: str | None = None) -> int:
    email = email.strip().lower()
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO users (email, display_name) VALUES (%s, %s)
                       ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id""",
                    (email, display_name or email.split("@")[0]))
        user_id = cur.fetchone()[0]
        cur.execute("INSERT INTO org_members (org_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (org_id, user_id))
        return user_id


def app_for_key(conn, key: str) -> int | None:
    """The app a live key belongs to, or None for an unknown or revoked key."""
    with conn.cursor() as cur:
        cur.execute("SELECT app_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                    (hash_key(key),))
        row = cur.fetchone()
        return row[0] if row else None


def live_key_hashes(conn) -> dict[bytes, int]:
    """Every live (unrevoked) key's hash -> its app: what ingest caches to outlive Postgres."""
    with conn.cursor() as cur:
        cur.execute("SELECT key_hash, app_id FROM api_keys WHERE revoked_at IS NULL")
        return {bytes(key_hash): app_id for key_hash, app_id in cur}
