-- The Moesif field the api_calls table had no column for.
ALTER TABLE api_calls ADD COLUMN blocked_by text;
