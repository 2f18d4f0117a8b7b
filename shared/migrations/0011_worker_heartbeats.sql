-- Live workers, so that `sluice status` and the ops page can count them and read the drain's lag.
-- Each worker's main process upserts its row every few seconds and deletes it when it stops
-- cleanly; a row not refreshed for a while belongs to a dead worker (services/fleet.py).
CREATE TABLE worker_heartbeats (
    worker          text PRIMARY KEY,          -- host:pid of the worker's main process
    drain_threads   integer NOT NULL,          -- drain threads running
    -- SentTimestamp of the oldest message in its drain threads' latest receives; NULL when they
    -- found the queue empty. SQS has no cheaper way to tell a message's age without receiving it.
    oldest_sent_at  timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    seen_at         timestamptz NOT NULL DEFAULT now()
);

-- "Stored in the last minute / hour" for the status command and the ops page. Rows are appended in
-- stored_at order, so a BRIN index (a few pages, almost free to maintain on the drain's inserts)
-- narrows those scans to the newest block ranges. Built on existing rows in one pass.
CREATE INDEX events_stored_at ON events USING brin (stored_at);
CREATE INDEX api_calls_stored_at ON api_calls USING brin (stored_at);
