"""Email logins, Data Cortex style: a session key that works only once the mailed link was opened
and the manual code typed there, by someone who has both the mail and the code.

Plain functions over a Postgres connection; the Flask views are in accounts.py.
"""

import hmac
import secrets
from dataclasses import dataclass

from services import tenancy

# Outcomes of a verification attempt (and states of a pending login, for the page).
PENDING, VERIFIED, WRONG_CODE, LOCKED, EXPIRED, USED, UNKNOWN = (
    "pending",
    "verified",
    "wrong_code",
    "locked",
    "expired",
    "used",
    "unknown",
)


@dataclass(frozen=True)
class Login:
    session_key: str
    manual_code: str
    verify_token: str | None  # None when no user has the email: there is nothing to verify


def start_login(conn, email: str, ttl_seconds: int) -> Login:
    """A new login for `email`. Unknown emails get an answer of the same shape that never works."""
    session_key, manual_code = secrets.token_urlsafe(32), f"{secrets.randbelow(10**6):06d}"
    verify_token = secrets.token_urlsafe(32)
    user_id = tenancy.user_by_email(conn, email)
    if user_id is None:
        return Login(session_key, manual_code, None)
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO login_sessions (user_id, session_hash, verify_hash, code_hash, verify_by)
                       VALUES (%s, %s, %s, %s, now() + %s * interval '1 second')""",
            (
                user_id,
                tenancy.hash_key(session_key),
                tenancy.hash_key(verify_token),
                tenancy.hash_key(manual_code),
                ttl_seconds,
            ),
        )
    return Login(session_key, manual_code, verify_token)


def _state(row, max_attempts: int) -> str:
    _, _, failed, expired, verified = row
    if verified:
        return USED
    if failed >= max_attempts:
        return LOCKED
    return EXPIRED if expired else PENDING


_PENDING_ROW = """SELECT id, code_hash, failed_codes, verify_by < now(), verified_at IS NOT NULL
                  FROM login_sessions WHERE verify_hash = %s"""


def login_state(conn, verify_token: str, max_attempts: int) -> str:
    with conn.cursor() as cur:
        cur.execute(_PENDING_ROW, (tenancy.hash_key(verify_token),))
        row = cur.fetchone()
    return UNKNOWN if row is None else _state(row, max_attempts)


def verify(conn, verify_token: str, code: str, max_attempts: int, session_seconds: int) -> str:
    """Check the manual code for the login the link belongs to; on success the session key works.

    Each wrong code is counted (and committed) so that guessing locks the login for good.
    """
    with conn.cursor() as cur:
        # FOR UPDATE: concurrent guesses are counted one after another, never lost.
        cur.execute(_PENDING_ROW + " FOR UPDATE", (tenancy.hash_key(verify_token),))
        row = cur.fetchone()
        if row is None:
            return UNKNOWN
        state = _state(row, max_attempts)
        if state != PENDING:
            return state
        login_id, code_hash = row[0], bytes(row[1])
        if not hmac.compare_digest(code_hash, tenancy.hash_key(code.strip())):
            cur.execute(
                "UPDATE login_sessions SET failed_codes = failed_codes + 1 WHERE id = %s "
                "RETURNING failed_codes",
                (login_id,),
            )
            return LOCKED if cur.fetchone()[0] >= max_attempts else WRONG_CODE
        cur.execute(
            """UPDATE login_sessions
                       SET verified_at = now(), expires_at = now() + %s * interval '1 second'
                       WHERE id = %s""",
            (session_seconds, login_id),
        )
        return VERIFIED


_LIVE = "session_hash = %s AND verified_at IS NOT NULL AND logged_out_at IS NULL AND expires_at > now()"


def session_user(conn, session_key: str) -> int | None:
    """The user of a verified, live session key, else None."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT user_id FROM login_sessions WHERE {_LIVE}", (tenancy.hash_key(session_key),))
        row = cur.fetchone()
        return row[0] if row else None


def logout(conn, session_key: str) -> bool:
    """Disable a live session key; False when it was not one."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE login_sessions SET logged_out_at = now() WHERE {_LIVE}", (tenancy.hash_key(session_key),)
        )
        return cur.rowcount == 1
