"""The three Sluice services (ingest, control, worker) and what they share at run time."""
