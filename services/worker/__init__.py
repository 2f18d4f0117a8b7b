"""The worker fleet: drains SQS into Postgres and runs render and pipeline tasks."""
