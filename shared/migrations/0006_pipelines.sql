-- Connectors and pipelines (Formance simple ingester contract): streaming stored events out.

-- Where a pipeline reads from. Identity ids are drawn before commit, so `id > cursor` can skip a
-- row whose transaction commits after a higher id was read. Instead every row records the id of
-- the transaction that wrote it, and a reader only takes rows whose transaction is older than the
-- oldest one still running (the xmin of pg_current_snapshot()): those are all finished, and any row
-- stored later has a higher xid. Readers walk (xid, id), which is the order delivered.
-- The constant default keeps ADD COLUMN instant; rows stored before this migration read as xid 0.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_app_xid ON events (app_id, xid, id);

ALTER TABLE api_calls ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE api_calls ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX api_calls_app_xid ON api_calls (app_id, xid, id);

-- Wake pipeline runners when rows commit (NOTIFY is delivered at commit, and collapses
-- duplicates within a transaction). One notification per statement, not per row.
CREATE FUNCTION sluice_notify_stored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sluice_stored', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify_stored AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_notify_stored();
CREATE TRIGGER api_calls_notify_stored AFTER INSERT ON api_calls
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_notify_stored();

CREATE TABLE connectors (
    id          uuid PRIMARY KEY,
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- list order for cursor pages
    app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    driver      text NOT NULL,
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connectors_app ON connectors (app_id, seq);

CREATE TABLE pipelines (
    id              uuid PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    app_id          bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    module          text NOT NULL,                  -- 'events' or 'api_calls'
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE RESTRICT,
    -- {"label": ..., "previousState": {...}}: the Formance State without the cursor.
    state           jsonb NOT NULL,
    label           text NOT NULL,                  -- state->>'label', for the runners' claim query
    -- The last delivered row: (xid, id). NULL means nothing delivered yet.
    cursor_xid      xid8,
    cursor_id       bigint,
    -- Bumped by reset, so a batch in flight across a reset cannot save its cursor afterwards.
    generation      integer NOT NULL DEFAULT 0,
    -- One runner at a time: it holds the lease until it lapses (the owner died) or is released.
    lease_owner     text,
    lease_expires   timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),  -- retry backoff
    failures        integer NOT NULL DEFAULT 0,          -- consecutive failed deliveries
    last_error      text,
    last_error_at   timestamptz,
    delivered       bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, module, connector_id)
);
CREATE INDEX pipelines_app ON pipelines (app_id, seq);
CREATE INDEX pipelines_runnable ON pipelines (next_attempt_at) WHERE label IN ('INIT', 'READY');
CREATE INDEX pipelines_connector ON pipelines (connector_id);
