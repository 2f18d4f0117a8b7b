-- Live pipeline runners, so that each claims only its fair share of the running pipelines
-- (ceil(running / live runners)) and a runner started later gets work without waiting for
-- another to die. A runner upserts its row every round and deletes it when it stops cleanly;
-- a row not seen for a lease period belongs to a dead runner and no longer counts.
CREATE TABLE pipeline_runners (
    owner   text PRIMARY KEY,           -- the lease_owner value the runner writes on pipelines
    seen_at timestamptz NOT NULL DEFAULT now()
);
