"""Sluice's contract package: wire schemas, enums, the SQS envelope codec, error shapes, migrations.

Everything here is plain Python plus marshmallow, so the ingest API, the control API and the
workers can all import it; it must never import Flask, Celery or boto3.
"""
