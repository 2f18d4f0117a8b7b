-- Logins by email (Data Cortex): a login answers a session key and a manual code, and mails a
-- verification link; the session key works only after the person opened the link and typed the
-- code. Only hashes of the session key, the link token and the code are kept, so a copy of this
-- table logs nobody in.
CREATE TABLE login_sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_hash    bytea NOT NULL UNIQUE,
    verify_hash     bytea NOT NULL UNIQUE,
    code_hash       bytea NOT NULL,
    failed_codes    integer NOT NULL DEFAULT 0,   -- wrong manual codes; at the limit the login is locked
    created_at      timestamptz NOT NULL DEFAULT now(),
    verify_by       timestamptz NOT NULL,          -- the link and the code expire at this time
    verified_at     timestamptz,
    expires_at      timestamptz,                   -- set on verification: the session's end
    logged_out_at   timestamptz
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);
