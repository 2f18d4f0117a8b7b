"""Organizations, users, apps and API keys: the one identity model every wire form maps onto."""

import hashlib
import secrets

from shared.enums import KeyScope

KEY_PREFIX = "sk_"


def hash_key(key: str) -> bytes:
    """The sha256 a secret is stored and looked up by. A secret sent with a lone surrogate (JSON
    allows "\\ud800") hashes too, and matches nothing, rather than failing to encode."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    """A 256-bit random token; the caller shows it once and stores only its hash.

    Hex makes it 67 characters: Moesif's Node middleware refuses an application id shorter than
    50. Keys issued before as 46 characters (base64url) keep working: keys are looked up by hash.
    """
    return KEY_PREFIX + secrets.token_hex(32)


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


def create_key(conn, app_id: int, scope: KeyScope) -> tuple[int, str]:
    """Create an API key of `scope` for an app; return (key id, the secret key)."""
    key = new_key()
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_keys (app_id, prefix, key_hash, scope) VALUES (%s, %s, %s, %s) RETURNING id",
            (app_id, key[:10], hash_key(key), KeyScope(scope).value),
        )
        return cur.fetchone()[0], key


def create_user(conn, org_id: int, email: str, display_name: str | None = None) -> int:
    email = email.strip().lower()
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO users (email, display_name) VALUES (%s, %s)
                       ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id""",
            (email, display_name or email.split("@")[0]),
        )
        user_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO org_members (org_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (org_id, user_id),
        )
        return user_id


def live_key(conn, key: str) -> tuple[int, KeyScope] | None:
    """(app, scope) of a live key, or None for an unknown or revoked key."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT app_id, scope FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (hash_key(key),)
        )
        row = cur.fetchone()
        return (row[0], KeyScope(row[1])) if row else None


def app_for_key(conn, key: str) -> int | None:
    """The app a live key of either scope belongs to (what ingest accepts), or None."""
    found = live_key(conn, key)
    return found[0] if found else None


def live_key_hashes(conn) -> dict[bytes, int]:
    """Every live (unrevoked) key's hash -> its app, of either scope: what ingest caches to outlive
    Postgres."""
    with conn.cursor() as cur:
        cur.execute("SELECT key_hash, app_id FROM api_keys WHERE revoked_at IS NULL")
        return {bytes(key_hash): app_id for key_hash, app_id in cur}


def user_by_email(conn, email: str) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM users WHERE email = %s", (email.strip().lower(),))
        row = cur.fetchone()
        return row[0] if row else None


def user_profile(conn, user_id: int) -> dict | None:
    """The user with the organizations they belong to, as Data Cortex's GET /user shows it."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, email, display_name FROM users WHERE id = %s", (user_id,))
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(
            """SELECT o.id, o.name FROM orgs o JOIN org_members m ON m.org_id = o.id
                       WHERE m.user_id = %s ORDER BY o.id""",
            (user_id,),
        )
        orgs = [{"org_id": org_id, "name": name} for org_id, name in cur.fetchall()]
    return {"user_id": row[0], "email": row[1], "display_name": row[2], "org_list": orgs}


def is_member(conn, user_id: int, org_id: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM org_members WHERE user_id = %s AND org_id = %s", (user_id, org_id))
        return cur.fetchone() is not None


def user_may_manage_app(conn, user_id: int, app_id: int) -> bool:
    """True when the app exists and belongs to one of the user's organizations."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT 1 FROM apps a JOIN org_members m ON m.org_id = a.org_id
                       WHERE a.id = %s AND m.user_id = %s""",
            (app_id, user_id),
        )
        return cur.fetchone() is not None


def user_apps(conn, user_id: int) -> list[dict]:
    """Every app of the user's organizations: id, name and the org's name."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT a.id, a.name, o.name FROM apps a JOIN orgs o ON o.id = a.org_id
                       JOIN org_members m ON m.org_id = a.org_id
                       WHERE m.user_id = %s ORDER BY o.name, a.id""",
            (user_id,),
        )
        return [{"app_id": app_id, "name": name, "org": org} for app_id, name, org in cur.fetchall()]


def list_apps(conn, org_id: int) -> list[dict]:
    """The org's apps with their live keys (id, prefix and scope only: secrets are never kept)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT a.id, a.name, k.id, k.prefix, k.scope, k.created_at
                       FROM apps a LEFT JOIN api_keys k ON k.app_id = a.id AND k.revoked_at IS NULL
                       WHERE a.org_id = %s ORDER BY a.id, k.id""",
            (org_id,),
        )
        apps: dict[int, dict] = {}
        for app_id, name, key_id, prefix, scope, created_at in cur.fetchall():
            app = apps.setdefault(app_id, {"app_id": app_id, "name": name, "keys": []})
            if key_id is not None:
                app["keys"].append(
                    {"key_id": key_id, "prefix": prefix, "scope": scope, "created_at": created_at}
                )
    return list(apps.values())


def revoke_key(conn, app_id: int, key_id: int) -> bool:
    """Revoke one live key of the app; False when the app has no such live key."""
    with conn.cursor() as cur:
        cur.execute(
            """UPDATE api_keys SET revoked_at = now()
                       WHERE id = %s AND app_id = %s AND revoked_at IS NULL""",
            (key_id, app_id),
        )
        return cur.rowcount == 1


def delete_app(conn, app_id: int) -> bool:
    """Delete the app: its keys, jobs, connectors and pipelines go with it (ON DELETE CASCADE), so
    ingest refuses the keys. Its files and stored events are deleted by the worker sweep, which the
    app_deletions row written here asks for (services/app_deletions.py)."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM apps WHERE id = %s RETURNING id, org_id, name", (app_id,))
        deleted = cur.fetchone()
        if deleted is None:
            return False
        cur.execute("INSERT INTO app_deletions (app_id, org_id, name) VALUES (%s, %s, %s)", deleted)
        return True
