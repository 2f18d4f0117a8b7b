-- Reports (Barchart) and exports (Mews) are one kind of work: a job row the control API writes,
-- a worker claims with a compare-and-set on its status, and renders into files on S3.
-- status is ours, not a wire form: queued -> running -> done | failed | timeout; done -> expired.
-- Each contract maps it onto its own words (RUNNING/COMPLETE..., Pending/Processing/Success...).
CREATE TABLE render_jobs (
    id            uuid PRIMARY KEY,
    app_id        bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('report', 'export')),
    entity_type   text NOT NULL,             -- 'Event' or 'ApiCall'
    filter        jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'timeout', 'expired')),
    client_token  text,                      -- Mews: the calling integration, recorded
    client        text,
    rows_written  bigint NOT NULL DEFAULT 0, -- progress while running, the total when done
    attempts      integer NOT NULL DEFAULT 0,
    claim         uuid,                      -- the current attempt; a lost claim stops writing
    heartbeat_at  timestamptz,               -- a running job whose heartbeat went stale is retried
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    expires_at    timestamptz
);
CREATE INDEX render_jobs_app ON render_jobs (app_id, created_at);
-- The sweep looks only at unfinished jobs and finished exports that may expire.
CREATE INDEX render_jobs_open ON render_jobs (status) WHERE status IN ('queued', 'running');
CREATE INDEX render_jobs_expiring ON render_jobs (expires_at) WHERE status = 'done';
-- Mews: one Pending or Processing export per app and entity type. The index makes the check
-- race-free: two concurrent `add` calls cannot both insert.
CREATE UNIQUE INDEX render_jobs_one_open_export ON render_jobs (app_id, entity_type)
    WHERE kind = 'export' AND status IN ('queued', 'running');

-- A file exists here only once its upload completed; the job's completion writes these rows in
-- the same transaction that marks it done.
CREATE TABLE render_files (
    job_id      uuid NOT NULL REFERENCES render_jobs(id) ON DELETE CASCADE,
    part        integer NOT NULL,            -- 1-based, in the order the rows were written
    s3_key      text NOT NULL,
    size_bytes  bigint NOT NULL,
    row_count   bigint NOT NULL,
    sha256      text NOT NULL,               -- hex
    PRIMARY KEY (job_id, part)
);
