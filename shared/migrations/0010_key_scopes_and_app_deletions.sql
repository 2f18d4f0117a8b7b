-- Key scopes: an `ingest` key only posts events (it is the one that ships inside browsers and
-- apps); an `admin` key also drives the control API. Keys made before scopes existed could do
-- everything, so they stay admin. The default fills those rows and is then dropped: every key made
-- from now on names its scope.
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'admin' CHECK (scope IN ('ingest', 'admin'));
ALTER TABLE api_keys ALTER COLUMN scope DROP DEFAULT;

-- Fair renders: the next job goes to the app with the fewest running renders, and among those to
-- the app served least recently (the latest started_at of its jobs, read through this index).
CREATE INDEX render_jobs_app_started ON render_jobs (app_id, started_at);
