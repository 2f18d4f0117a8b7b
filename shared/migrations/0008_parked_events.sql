-- Events the database refused, kept until an operator replays or drops them (`sluice dlq`).
-- The drain parks an event here, with the database's reason, in the transaction that stores the
-- rest of its message, so the message can be deleted and nothing is dropped silently.
CREATE TABLE parked_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      bigint NOT NULL,
    kind        text NOT NULL,                  -- 'barchart' or 'moesif'
    batch       uuid NOT NULL,
    sequence    integer NOT NULL,
    received_ms bigint NOT NULL,                -- when ingest accepted it, as its envelope says
    -- The event as JSON text, ASCII-escaped: it may hold exactly what the event tables refuse
    -- (a NUL, a lone surrogate), which as \u escapes any text column keeps to the byte.
    event       text NOT NULL,
    reason      text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    -- Parked again (a redelivery, a replay that fails) means the same row with the newer reason.
    UNIQUE (app_id, kind, batch, sequence)
);

-- A Moesif call is stored once per app and transaction_id. The index holds md5 of the id (the
-- immutable hash Postgres has for text), so an id of any length fits a B-tree entry; ids are the
-- app's own, so a crafted collision could only merge two of that app's own calls.
-- NULL and '' mean "no id" and are never deduplicated.
-- Calls stored twice before this migration keep their first-stored row; the later copies move
-- to parked_events (their reason names the row kept), where operators can see and drop them.
WITH copies AS (
    SELECT id, min(id) OVER (PARTITION BY app_id, transaction_id) AS kept
    FROM api_calls
    WHERE transaction_id <> ''
), moved AS (
    DELETE FROM api_calls a USING copies c
    WHERE a.id = c.id AND c.id <> c.kept
    RETURNING a.*, c.kept
)
INSERT INTO parked_events (app_id, kind, batch, sequence, received_ms, event, reason)
SELECT app_id, 'moesif', batch, sequence, (extract(epoch FROM received_at) * 1000)::bigint,
       jsonb_build_object(
           'request', request, 'response', response, 'user_id', user_id, 'company_id', company_id,
           'session_token', session_token, 'tags', tags, 'metadata', metadata,
           'direction', direction, 'weight', weight, 'blocked_by', blocked_by,
           'transaction_id', transaction_id
       )::text,
       'duplicate transaction_id: this call is stored as api_calls row ' || kept
FROM moved;

CREATE UNIQUE INDEX api_calls_transaction ON api_calls (app_id, md5(transaction_id))
    WHERE transaction_id <> '';
