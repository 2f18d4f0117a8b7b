"""The ingest API: producers POST events; they leave only once SQS has accepted them."""
