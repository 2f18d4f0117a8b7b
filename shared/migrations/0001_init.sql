-- Tenancy: organizations have users and applications; an application has API keys.
CREATE TABLE orgs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL UNIQUE,  -- stored lower-cased
    display_name  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_members (
    org_id   bigint NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id  bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE apps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      bigint NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_org ON apps (org_id);

-- A key is shown once; only its sha256 is kept. Keys are 256-bit random tokens, so a fast hash
-- is enough: there is nothing to brute-force that a slow hash would protect.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    prefix      text NOT NULL,           -- first characters, to tell keys apart in listings
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_app ON api_keys (app_id);

-- Barchart events. The primary key makes storing idempotent: a redelivered SQS message inserts
-- nothing new. Reads are "one app, one time range", served by (app_id, timestamp).
-- id orders rows for pipelines that stream stored events.
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    app_id      bigint NOT NULL,
    batch       uuid NOT NULL,
    sequence    integer NOT NULL,
    customer    text NOT NULL,
    product     text NOT NULL,
    type        text NOT NULL,
    timestamp   bigint NOT NULL,         -- epoch milliseconds, as the contract sends it
    context     jsonb NOT NULL,          -- array of strings
    received_at timestamptz NOT NULL,    -- when the ingest API accepted it
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, batch, sequence)
);
CREATE INDEX events_app_time ON events (app_id, timestamp);
CREATE INDEX events_app_id ON events (app_id, id);

-- Moesif API calls: the request/response pair, with the fields reports filter on as columns and
-- the whole objects kept as jsonb.
CREATE TABLE api_calls (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    app_id          bigint NOT NULL,
    batch           uuid NOT NULL,
    sequence        integer NOT NULL,
    request_time    timestamptz NOT NULL,
    response_time   timestamptz NOT NULL,
    uri             text NOT NULL,
    verb            text NOT NULL,
    status          integer NOT NULL,
    ip_address      text NOT NULL,
    user_id         text,
    company_id      text,
    session_token   text,
    direction       text,
    weight          integer,
    transaction_id  text,
    tags            text,
    metadata        jsonb,
    request         jsonb NOT NULL,
    response        jsonb NOT NULL,
    received_at     timestamptz NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, batch, sequence)
);
CREATE INDEX api_calls_app_time ON api_calls (app_id, request_time);
CREATE INDEX api_calls_app_id ON api_calls (app_id, id);
