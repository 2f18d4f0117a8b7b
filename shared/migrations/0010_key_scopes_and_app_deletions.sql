-- Key scopes: an `ingest` key only posts events (it is the one that ships inside browsers and
-- apps); an `admin` key also drives the control API. Keys made before scopes existed could do
-- everything, so they stay admin. The default fills those rows and is then dropped: every key made
-- from now on names its scope.
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'admin' CHECK (scope IN ('ingest', 'admin'));
ALTER TABLE api_keys ALTER COLUMN scope DROP DEFAULT;

-- Fair renders: the next job goes to the app with the fewest running renders, and among those to
-- the app served least recently (the latest started_at of its jobs, read through this index).
CREATE INDEX render_jobs_app_started ON render_jobs (app_id, started_at);

-- Deleting an app deletes its files and stored events as well. That can take a while, so the
-- app's row goes at once (its keys stop working) and the worker sweep deletes the rest; this row
-- says how far it got (`sluice admin deletions` shows it).
CREATE TABLE app_deletions (
    app_id          bigint PRIMARY KEY,              -- the deleted app: no foreign key, its row is gone
    org_id          bigint NOT NULL,
    name            text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    files_deleted   bigint NOT NULL DEFAULT 0,
    rows_deleted    bigint NOT NULL DEFAULT 0,       -- stored events and API calls
    finished_at     timestamptz,
    last_error      text                             -- the last attempt's failure; the sweep retries
);
CREATE INDEX app_deletions_pending ON app_deletions (requested_at) WHERE finished_at IS NULL;
