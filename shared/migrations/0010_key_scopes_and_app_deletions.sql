-- Key scopes: an `ingest` key only posts events (it is the one that ships inside browsers and
-- apps); an `admin` key also drives the control API. Keys made before scopes existed could do
-- everything, so they stay admin. The default fills those rows and is then dropped: every key made
-- from now on names its scope.
ALTER TABLE api_keys ADD COLUMN scope text NOT NULL DEFAULT 'admin' CHECK (scope IN ('ingest', 'admin'));
ALTER TABLE api_keys ALTER COLUMN scope DROP DEFAULT;
