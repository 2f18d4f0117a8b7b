"""Celery task modules: thin wrappers, by explicit name, over plain functions tests call directly."""
